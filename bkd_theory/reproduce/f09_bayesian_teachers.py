"""F9, Bayesian vs deterministic teachers: distance to the true BCP and their students (DESIGN 2.2, 6 F9).

Teachers (`bkd_theory.teachers.trained`), fitted on one labelled sample of the paper task (standardised
inputs): a deterministic 2 x 128 ReLU MLP, a deep ensemble (member 0 is that network), MC dropout,
and a last-layer Laplace approximation on the deterministic network (probit predictive, prior
precision by marginal likelihood). `teacher_report` measures each against the TRUE p on fresh
points: KL(p || p~), L2, ECE against p, accuracy, each with its SE; `paired_difference` gives the
KL differences on the same points.

Students: the F1 student (2 x 128 ReLU MLP, batch 1, lr 5e-4, momentum 0.9, epoch shuffling) on a
finite training set drawn per seed by the loop, trained by `sgd.run(task, student, teacher)` with
each trained teacher itself as the target law: targets p~(x) at the student's training points
(deterministic, so frozen = fresh), plus onehot (frozen labels) and exact bcp for reference. The
standard instruments record the validation loss, the excess risk KL(p || q) against the TRUE p
(`ExcessRisk`) and the accuracy (`Calibration`) on the loop's eval set. Seeds are the loop's chains;
chain r has the same training inputs, labels, initialisation and order for every teacher, so
per-seed differences are paired. The teachers' sample has the size of a student's training set
(the same data budget, as in KD), but it is a different draw: the loop draws each seed's training
set itself, so the teacher is queried out of sample, as in `teacher_report`.

Predictions: a biased teacher moves the minimiser to q = p~ (Prop. 1, DESIGN 2.3), so a student
that fits its teacher exactly has excess risk KL(p || p~): that is the "predicted" value of each
student row (direction of the ranking, not a sharp value: the student's own estimation error
adds, and smoothing can remove part of the teacher's error). Verdicts of directional claims:
"holds" / "fails" beyond 2 SE, else "inconclusive". End-of-training values: mean over the last 10 %
of the recorded evaluations per seed; loss noise: std of the validation loss over the last half.

CSV (tidy): part (teacher | student), teacher, seed, step, quantity, value, se. Teacher rows (seed =
step = -1): the `teacher_report` metrics with their SE, and kl_deterministic_minus_this (paired).
Student rows: the curves val_loss, excess_risk, accuracy per seed and step, and end_excess_risk,
end_accuracy, end_loss_noise, end_loss_noise_detrended per seed at the last step.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import synthetic

from .. import plots, sgd
from ..teachers import FunctionTeacher, trained
from ..teachers.quality import paired_difference, teacher_report
from ..instruments import Calibration, Every, ExcessRisk, ValidationLoss, loss_noise
from ..stats import trailing_window
from ..plots import learning as lp
from ..records import Run
from ..rng import stream
from . import write_claims
from ..threads import single_thread
from .f01_learning_curves import STUDENT, directional, mean_se

FIG_ID = "F9"
SEED = 9
TRAINED = ("deterministic", "ensemble", "mc_dropout", "laplace")
BAYESIAN = ("ensemble", "mc_dropout", "laplace")
REFERENCE = ("onehot", "bcp")
CURVES = ("val_loss", "excess_risk", "accuracy")  # student curves kept in the CSV


@dataclass(frozen=True)
class Setting:
    """Sizes of one mode: the teachers' sample and training, the students' runs, the report sample."""

    teacher_n: int
    teacher_epochs: int
    members: int
    passes: int
    n: int
    epochs: int
    seeds: int
    eval_every: int
    eval_n: int
    report_n: int

    @property
    def steps(self) -> int:
        return self.n * self.epochs


QUICK = Setting(teacher_n=1_000, teacher_epochs=20, members=3, passes=16, n=1_000, epochs=1, seeds=3, eval_every=50,
                eval_n=1_000, report_n=2_000)
FULL = Setting(teacher_n=5_000, teacher_epochs=100, members=5, passes=32, n=5_000, epochs=2, seeds=6, eval_every=100,
               eval_n=2_500, report_n=20_000)
P_DROP = 0.1


def fit_teachers(task: Any, setting: Setting) -> dict[str, trained.TrainedTeacher]:
    """Fit the four trained teachers on one labelled sample (`rng.stream(SEED, "figure.F9", 0)`)."""
    x, y = task.sample(setting.teacher_n, stream(SEED, "figure.F9", 0))
    train = dict(num_classes=task.num_classes, epochs=setting.teacher_epochs, seed=SEED)
    det = trained.fit_deterministic(x, y, **train)
    return {
        "deterministic": det,
        "ensemble": trained.fit_ensemble(x, y, members=setting.members, **train),
        "mc_dropout": trained.fit_mc_dropout(x, y, p_drop=P_DROP, passes=setting.passes, **train),
        "laplace": trained.laplace_from_network(det, x, y),
    }


def _student(task: Any, setting: Setting, target: str | trained.TrainedTeacher) -> Run:
    """Train the students of one teacher (a trained teacher object or a spec string) on `task`."""
    when = Every(setting.eval_every, setting.steps)
    return sgd.run(task, STUDENT["student"], target, standardize=True, regime="finite", n=setting.n,
                   sampling="shuffle", noise="frozen", steps=setting.steps, chains=setting.seeds, seed=SEED,
                   eval_every=setting.eval_every, eval_n=setting.eval_n,
                   instruments=[ValidationLoss(when), ExcessRisk(when), Calibration(when)],
                   **{k: v for k, v in STUDENT.items() if k != "student"})


def _end(run: Run, quantity: str) -> np.ndarray:
    steps, vals = run.values(quantity)
    return vals[trailing_window(np.asarray(steps), 0.1)].mean(axis=0)


def configuration(setting: Setting) -> str:
    return (f"paper (std); teachers: n={setting.teacher_n}, {setting.teacher_epochs} epochs, M={setting.members}, "
            f"S={setting.passes}; students: mlp 2x128, b=1, lr=5e-4, m=0.9, n={setting.n}, {setting.epochs} ep, "
            f"{setting.seeds} seeds")


def make(quick: bool, out: Path) -> list[Path]:
    """Write F9.png, F9.csv and F9.claims.csv into `out`; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    setting = QUICK if quick else FULL
    task = synthetic.make_task("paper", standardize=True)
    with single_thread():
        fitted = fit_teachers(task, setting)
        runs = {name: _student(task, setting, fitted[name]) for name in TRAINED}
        runs.update({name: _student(task, setting, name) for name in REFERENCE})
    exact = FunctionTeacher(task.log_bcp, name="bcp", log=True)
    reports = {name: teacher_report(t, task, setting.report_n, seed=SEED).to_dict()
               for name, t in {**fitted, "bcp": exact}.items()}
    kl_diff = {b: paired_difference(fitted["deterministic"], fitted[b], task, setting.report_n, seed=SEED)
               for b in BAYESIAN}

    per_seed = {}
    rows = []
    for name, run in runs.items():
        ln = loss_noise(run.table(), quantity="val_loss")
        per_seed[name] = pd.DataFrame({"seed": ln["chain"], "excess_risk": _end(run, "excess_risk"),
                                       "accuracy": _end(run, "accuracy"), "loss_noise": ln["loss_noise"],
                                       "loss_noise_detrended": ln["loss_noise_detrended"]})
        tab = run.table().rename(columns={"chain": "seed"})
        tab = tab[tab["quantity"].isin(CURVES)]
        rows.append(tab.assign(part="student", teacher=name, se=math.nan))
        long = per_seed[name].melt(id_vars="seed", var_name="quantity", value_name="value")
        rows.append(long.assign(part="student", teacher=name, step=setting.steps, quantity="end_" + long["quantity"],
                                se=math.nan))
    for name, rep in reports.items():
        metrics = [k for k in rep if f"{k}_se" in rep]
        rows.append(pd.DataFrame({"part": "teacher", "teacher": name, "seed": -1, "step": -1, "quantity": metrics,
                                  "value": [rep[k] for k in metrics], "se": [rep[f"{k}_se"] for k in metrics]}))
    rows.append(pd.DataFrame({"part": "teacher", "teacher": list(kl_diff), "seed": -1, "step": -1,
                              "quantity": "kl_deterministic_minus_this", "value": [e.value for e in kl_diff.values()],
                              "se": [e.se for e in kl_diff.values()]}))
    data = pd.concat(rows, ignore_index=True)[["part", "teacher", "seed", "step", "quantity", "value", "se"]]
    csv = out / f"{FIG_ID}.csv"
    data.to_csv(csv, index=False)

    summary = _summary(per_seed, reports)
    claims = write_claims(out, FIG_ID, _claims(per_seed, reports, kl_diff, configuration(setting)))
    png = _figure(data, summary, task, setting, out)
    return [png, csv, claims]


def _summary(per_seed: dict[str, pd.DataFrame], reports: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for name, s in per_seed.items():
        row: dict = {"teacher": name}
        for col in ("excess_risk", "accuracy", "loss_noise", "loss_noise_detrended"):
            row[col], row[f"{col}_se"], row["seeds"] = mean_se(s[col].to_numpy())
        rep = reports.get(name, {})
        row["teacher_kl"], row["teacher_kl_se"] = rep.get("kl", math.nan), rep.get("kl_se", math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _paired(per_seed: dict[str, pd.DataFrame], a: str, b: str, col: str) -> tuple[float, float]:
    m, se, _ = mean_se(per_seed[a][col].to_numpy() - per_seed[b][col].to_numpy())
    return m, se


def _claims(per_seed, reports, kl_diff, config: str) -> list[dict]:
    claims = []
    for b, est in kl_diff.items():
        claims.append({"claim": f"{b} teacher closer to the BCP than deterministic: KL(det) - KL({b}) > 0 (paired)",
                       "configuration": config, "predicted": "> 0", "measured": est.value, "measured_se": est.se,
                       "ratio": math.nan, "verdict": directional(est.value, est.se)})
    for name in TRAINED:
        s = per_seed[name]["excess_risk"].to_numpy()
        m, se, _ = mean_se(s)
        pred = reports[name]["kl"]
        claims.append({"claim": f"student({name}) excess risk vs teacher KL(p||p~) (minimiser q = p~, Prop. 1)",
                       "configuration": config, "predicted": pred, "measured": m, "measured_se": se,
                       "ratio": m / pred if pred > 0 else math.nan, "verdict": "finding"})
    for a, b in itertools.combinations(TRAINED, 2):
        far, near = (a, b) if reports[a]["kl"] >= reports[b]["kl"] else (b, a)
        m, se = _paired(per_seed, far, near, "excess_risk")
        claims.append({"claim": f"closer teacher, lower student excess risk: student({far}) - student({near}) > 0 "
                                f"(teacher KL {reports[far]['kl']:.3g} > {reports[near]['kl']:.3g})",
                       "configuration": config, "predicted": "> 0", "measured": m, "measured_se": se, "ratio": math.nan,
                       "verdict": directional(m, se)})
    best = min(TRAINED, key=lambda name: reports[name]["kl"])
    m, se = _paired(per_seed, "onehot", best, "excess_risk")
    claims.append({"claim": f"KD beats labels: student(onehot) - student({best}, the closest trained teacher) excess "
                            "risk > 0", "configuration": config, "predicted": "> 0", "measured": m, "measured_se": se,
                   "ratio": math.nan, "verdict": directional(m, se)})
    m, se = _paired(per_seed, "onehot", "bcp", "excess_risk")
    claims.append({"claim": "student(onehot) - student(bcp) excess risk > 0 (paired)", "configuration": config,
                   "predicted": "> 0", "measured": m, "measured_se": se, "ratio": math.nan, "verdict": directional(m, se)})
    for b in BAYESIAN:
        r = per_seed[b]["loss_noise"].to_numpy() / per_seed["deterministic"]["loss_noise"].to_numpy()
        m, se, _ = mean_se(r)
        claims.append({"claim": f"loss noise student({b}) / student(det) < 1 (paper: up to 30 % less; per-seed ratios)",
                       "configuration": config, "predicted": "< 1", "measured": m, "measured_se": se, "ratio": math.nan,
                       "verdict": directional(1.0 - m, se)})
    return claims


def _figure(data: pd.DataFrame, summary: pd.DataFrame, task: Any, setting: Setting, out: Path) -> Path:
    fig, axes = plots.new_figure(3, 2, width=4.0, height=3.1)
    teach = data[data["part"] == "teacher"]
    names = [*TRAINED, "bcp"]
    for ax, metric, label in ((axes[0, 0], "kl", "(a) teacher KL(p || p~) (nats)"), (axes[0, 1], "ece", "(b) teacher ECE vs true p")):
        sub = teach[teach["quantity"] == metric].set_index("teacher").reindex(names)
        lp.estimates(ax, names, sub["value"], sub["se"], reference_value=0.0, reference_label="exact p")
        ax.set_title(label + ", +-2 SE", fontsize=9)

    trained = summary.set_index("teacher").reindex([*TRAINED, "bcp"])
    lp.predicted_vs_measured(axes[0, 2], list(trained.index), trained["teacher_kl"].fillna(0.0), trained["teacher_kl_se"].fillna(0.0),
                             trained["excess_risk"], trained["excess_risk_se"])
    onehot = summary.set_index("teacher").loc["onehot"]
    lp.reference(axes[0, 2], onehot["excess_risk"], se=onehot["excess_risk_se"], label="onehot student", color="tab:red", ls=":")
    axes[0, 2].set_xlabel("predicted: teacher KL(p || p~)")
    axes[0, 2].set_ylabel("student excess risk, end (nats)")
    axes[0, 2].set_title("(c) student vs teacher, +-2 SE", fontsize=9)
    axes[0, 2].legend(fontsize=6)

    order = [*TRAINED, *REFERENCE]
    curves = data[(data["part"] == "student") & (data["quantity"] == "excess_risk")]
    lp.seed_bands(axes[1, 0], curves, order=order)
    axes[1, 0].set_yscale("log")
    axes[1, 0].set_ylabel("student excess risk KL(p || q) (nats)")
    axes[1, 0].set_title("(d) students, +-2 SE over seeds", fontsize=9)
    axes[1, 0].legend(fontsize=6)

    s = summary.set_index("teacher").reindex(order)
    bayes = task.bayes_accuracy()
    lp.estimates(axes[1, 1], order, s["accuracy"], s["accuracy_se"], reference_value=bayes.value,
                 reference_label="Bayes accuracy")
    axes[1, 1].set_title("(e) student accuracy, end, +-2 SE", fontsize=9)
    axes[1, 1].legend(fontsize=6)
    lp.estimates(axes[1, 2], order, s["loss_noise"], s["loss_noise_se"])
    axes[1, 2].set_title("(f) student loss noise (std val loss, last half)", fontsize=9)
    caption = (f"F9: paper task (standardised). Teachers: 2x128 ReLU MLPs on one sample of n={setting.teacher_n:,} labelled points, "
               f"{setting.teacher_epochs} epochs Adam; ensemble M={setting.members}, MC dropout p={P_DROP} S={setting.passes}, "
               f"last-layer Laplace (probit); measured vs true p on {setting.report_n:,} fresh points. Students: MLP 2x128, "
               f"b=1, lr 5e-4, momentum 0.9, {setting.epochs} epoch(s) over n={setting.n:,} other points per seed, targets p~(x) "
               "(exact p for bcp, frozen labels for onehot); "
               f"{setting.seeds} seeds (chains), SE across seeds.")
    return plots.save(fig, out, FIG_ID, caption)
