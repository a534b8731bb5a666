"""F9, Bayesian vs deterministic teachers: distance to the true BCP and their students (DESIGN 2.2,
2.10, 6 F9).

Teachers (`claims.learning.fitted`), fitted on one labelled sample of `teacher_n` points of the
paper task (standardised inputs): a deterministic 2 x 128 ReLU MLP (Adam, `teacher_epochs`
epochs, no early stopping), a deep ensemble of `members` (member 0 is that network), MC dropout
(p = `p_drop`, `passes` fixed masks) and a last-layer Laplace approximation on the deterministic
network (probit predictive, prior precision by marginal likelihood). Each is measured against the
TRUE p on `report_n` fresh points (`teachers.quality.teacher_report`: KL(p || p~), L2, ECE against
p, accuracy; SE = std / sqrt(n) over the points; the teacher's own fitting randomness is one draw).

Students: the paper's student (`claims.learning.PAPER`: 2 x 128 ReLU MLP, batch 1, lr 5e-4,
momentum 0.9, float32, epoch shuffling) on a training set of n points drawn per seed by the loop,
with each trained teacher's p~(x) as its targets (deterministic, so frozen = fresh; the teacher is
queried out of sample), plus onehot (frozen labels) and the exact bcp for reference. Seeds are the
loop's chains: chain r has the same training inputs, labels, initialisation and order for every
teacher, so per-seed differences are paired.

Claims (kinds in `claims.learning`, each from `claims.make(...).check()`):
- `teacher-kl` (Sign): each Bayesian teacher is closer to p than the deterministic one (paired KL
  differences on the same points);
- `student-kl` (Finding): Prop. 1 says a student that fits a biased teacher exactly has excess
  risk KL(p || p~); a finite student trained briefly does not fit it exactly (it smooths the
  teacher's over-confident tails), so this is set beside the measurement, not judged;
- `paired-difference` (Sign): the student of the teacher with the larger KL has the larger end
  excess risk (the direction of Prop. 1), and labels vs the closest trained teacher;
- the paper's "up to 30 % less noise" (students of Bayesian vs deterministic teachers: like with
  like): `loss-noise-ratio` (Sign: noise(det) / noise(Bayesian) > 1) and `paper-noise`
  (Finding: the measured reduction beside the paper's 30 %);
- the paper's "+4.27 %" accuracy: `paper-accuracy` (Finding: the paired accuracy difference,
  SE with the evaluation-sample term, beside +0.0427).
End values: the last `end_window` of the recorded steps, SE across seeds combined with the
evaluation-sample term (`records.Run.summary`, per-point differences for paired values). Loss
noise: the detrended std of the validation loss over the last half (as in F1).
"""
from __future__ import annotations

import math

import pandas as pd

from .. import claims
from ..claims import learning as L
from ..claims import recipes
from ..plots import band, finish, new_figure
from ..plots import learning as lp
from ..stats import mean_se
from .base import FRAME_COLUMNS, Result, figure

SEED = 9
REFERENCE = ("onehot", "bcp")
COLUMNS = [*FRAME_COLUMNS, "claim"]


def spec(name: str) -> str:
    """The run's teacher spec of a student label ("ensemble" -> "trained:ensemble"; onehot, bcp as is)."""
    return name if name in REFERENCE else f"trained:{name}"


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, claim: str = "") -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, claim=claim)


def base_config(s: dict) -> dict:
    """Students' and teachers' configuration (teacher spec filled in per claim)."""
    return {**L.PAPER, "teacher": "onehot", "n": s["n"], "steps": s["n"] * s["epochs"], "chains": s["seeds"],
            "seed": SEED, "eval_every": s["eval_every"], "eval_n": s["eval_n"], "end_window": s["end_window"],
            "curve": "val_loss", "detrend": True, "teacher_n": s["teacher_n"], "teacher_epochs": s["teacher_epochs"],
            "members": s["members"], "passes": s["passes"], "p_drop": s["p_drop"], "teacher_seed": SEED,
            "report_n": s["report_n"]}


@figure("F9", title="Bayesian teachers", seed=SEED,
        claims=("teacher-kl", "student-kl", "paired-difference", "loss-noise-ratio", "paper-noise", "paper-accuracy"),
        summary="Trained teachers vs the true p; their students' excess risk, accuracy and loss noise; the paper's "
                "30 % less noise and +4.27 % accuracy beside the measurement.")
class F9:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(teacher_n=1000, teacher_epochs=20, members=3, passes=16, p_drop=0.1, report_n=2000, n=2000,
                        epochs=2, seeds=4, eval_every=100, eval_n=1000, end_window=0.1)
        return dict(teacher_n=5000, teacher_epochs=100, members=5, passes=32, p_drop=0.1, report_n=20000, n=5000,
                    epochs=4, seeds=6, eval_every=200, eval_n=2500, end_window=0.1)

    @staticmethod
    def measure(s: dict) -> Result:
        base = base_config(s)
        reports = L.quality(base)
        records = _claims(base, reports)
        students = _student_table(base, reports)
        teachers = pd.DataFrame([{"teacher": k, **r.to_dict()} for k, r in reports.items()])
        rows = _teacher_rows(reports) + _student_rows(base, students, records)
        return Result(pd.DataFrame(rows, columns=COLUMNS), records, {"teachers": teachers, "students": students},
                      notes=_notes(records))

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(3, 2, width=4.2, height=3.2)
        f, st = result.frame, result.tables["students"].set_index("teacher")
        names = [*L.TRAINED, "bcp"]
        for ax, metric, title in ((axes[0, 0], "kl", "(a) teacher KL(p || p~) (nats)"),
                                  (axes[0, 1], "ece", "(b) teacher ECE against the true p")):
            sub = f[(f["panel"] == "teacher") & (f["kind"] == metric)].set_index("series").reindex(names)
            lp.estimates(ax, names, sub["value"], sub["se"], reference_value=0.0, reference_label="exact p")
            ax.set_title(title + ", +-2 SE", fontsize=9)
        tr = st.reindex(list(L.TRAINED))
        lp.predicted_vs_measured(axes[0, 2], list(tr.index), tr["teacher_kl"], tr["teacher_kl_se"], tr["excess_risk"],
                                 tr["excess_risk_se"])
        lp.reference(axes[0, 2], st.loc["onehot", "excess_risk"], se=st.loc["onehot", "excess_risk_se"],
                     label="onehot student", color="tab:red", ls=":")
        axes[0, 2].set_xlabel("teacher KL(p || p~) (Prop. 1 prediction)")
        axes[0, 2].set_ylabel("student excess risk, end (nats)")
        axes[0, 2].set_title("(c) student vs teacher, +-2 SE", fontsize=9)
        axes[0, 2].legend(fontsize=6)
        order = [*L.TRAINED, *REFERENCE]
        cur = f[f["panel"] == "curves"]
        for name in order:
            c = cur[cur["series"] == name]
            band(axes[1, 0], c["x"], c["value"], c["se"], label=name, color=lp.color(name))
        axes[1, 0].set_yscale("log")
        axes[1, 0].set_xlabel("SGD step")
        axes[1, 0].set_ylabel("student excess risk KL(p || q) (nats)")
        axes[1, 0].set_title("(d) students, +-2 SE (seeds + eval sample)", fontsize=9)
        axes[1, 0].legend(fontsize=6)
        sub = st.reindex(order)
        lp.estimates(axes[1, 1], order, sub["accuracy"], sub["accuracy_se"],
                     reference_value=float(sub["bayes_accuracy"].iloc[0]), reference_label="Bayes accuracy")
        axes[1, 1].set_title("(e) student accuracy at the end, +-2 SE", fontsize=9)
        axes[1, 1].legend(fontsize=6)
        lp.estimates(axes[1, 2], order, sub["noise_detrended"], sub["noise_detrended_se"],
                     reference_value=(1 - L.PAPER_NOISE_REDUCTION) * st.loc["deterministic", "noise_detrended"],
                     reference_label="paper: 30 % below the deterministic student")
        axes[1, 2].set_xlabel("val-loss std, last half, detrended")
        axes[1, 2].set_title("(f) student loss noise, +-2 SE", fontsize=9)
        axes[1, 2].legend(fontsize=6)
        return finish(fig, f"F9: paper task (standardised). Teachers: 2x128 ReLU MLPs on one sample of "
                           f"{s['teacher_n']:,} labelled points, {s['teacher_epochs']} epochs Adam; ensemble "
                           f"M={s['members']}, MC dropout p={s['p_drop']:g} S={s['passes']}, last-layer Laplace "
                           "(probit); "
                           f"measured against the true p on {s['report_n']:,} fresh points. Students: MLP 2x128, b=1, "
                           f"lr 5e-4, momentum 0.9, {s['epochs']} epochs over n={s['n']:,} other points per seed, "
                           f"targets p~(x); {s['seeds']} seeds; eval set of {s['eval_n']:,} points.")


def _claims(base: dict, reports: dict) -> list:
    """The judged claims (module docstring)."""
    det, kl = spec("deterministic"), {k: reports[k]["kl"].value for k in L.TRAINED}
    out = [claims.check("teacher-kl", f"teacher-kl-{b}", base, teacher=spec(b), than=det) for b in L.BAYESIAN]
    out += [claims.check("student-kl", f"student-kl-{t}", base, teacher=spec(t)) for t in L.TRAINED]
    for b in L.BAYESIAN:
        far, near = ("deterministic", b) if kl["deterministic"] >= kl[b] else (b, "deterministic")
        out.append(claims.check("paired-difference", f"excess-risk-{far}-minus-{near}", base, teacher=spec(far),
                          than=spec(near), quantity="excess_risk",
                          basis=f"teacher KL {kl[far]:.3g} > {kl[near]:.3g}: the closer teacher's student is closer"))
    best = min(L.TRAINED, key=kl.get)
    out.append(claims.check("paired-difference", f"excess-risk-onehot-minus-{best}", base, teacher="onehot", than=spec(best),
                      quantity="excess_risk", basis=f"KD from the closest trained teacher ({best}) beats labels"))
    for b in L.BAYESIAN:
        out.append(claims.check("loss-noise-ratio", f"noise-deterministic-over-{b}", base, teacher=det, than=spec(b),
                          reference=1.0, basis="the paper: Bayesian teachers give less noisy students"))
        out.append(claims.check("paper-noise", f"paper-noise-{b}", base, teacher=spec(b), than=det))
        out.append(claims.check("paper-accuracy", f"paper-accuracy-{b}", base, teacher=spec(b), than=det,
                          quantity="accuracy"))
    return out


def _student_table(base: dict, reports: dict) -> pd.DataFrame:
    """Per student: end excess risk, accuracy and val loss (SE: seeds + eval sample), loss noise
    (raw, detrended) with SE, its ratio to the deterministic teacher's student, the paired accuracy
    differences to that student and to the labels' student, and the teacher's KL(p || p~)."""
    bayes = L.bayes_accuracy(base)
    rows = []
    for name in [*L.TRAINED, *REFERENCE]:
        cfg = {**base, "teacher": spec(name)}
        row: dict = {"teacher": name, "seeds": base["chains"], "eval_n": base["eval_n"], "bayes_accuracy": bayes.value}
        for q in ("excess_risk", "accuracy", "val_loss"):
            e = L.end(cfg, q)
            row[q], row[f"{q}_se"], row[f"{q}_se_eval"] = e.value, e.se, e.info["se_eval"]
        for det, suffix in ((False, ""), (True, "_detrended")):
            row["noise" + suffix], row[f"noise{suffix}_se"], _ = mean_se(L.noise({**cfg, "detrend": det}))
        r = L.noise_ratio({**cfg, "than": spec("deterministic")})
        row["noise_ratio_to_deterministic"], row["noise_ratio_to_deterministic_se"] = r.value, r.se
        for ref in ("deterministic", "onehot"):
            d = L.paired({**cfg, "than": spec(ref), "quantity": "accuracy"})
            row[f"accuracy_minus_{ref}"], row[f"accuracy_minus_{ref}_se"] = d.value, d.se
        rep = reports.get(name)
        row["teacher_kl"] = rep["kl"].value if rep is not None else math.nan
        row["teacher_kl_se"] = rep["kl"].se if rep is not None else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _teacher_rows(reports: dict) -> list[dict]:
    return [_row("teacher", name, metric, i, e.value, e.se) for i, (name, rep) in enumerate(reports.items())
            for metric, e in rep.estimates.items()]


def _student_rows(base: dict, students: pd.DataFrame, records: list) -> list[dict]:
    """Excess-risk curves (mean over seeds, SE with the eval term), end values and the Prop. 1 pairs."""
    rows = []
    for name in [*L.TRAINED, *REFERENCE]:
        r = L.run({**base, "teacher": spec(name)})
        k, m, se, _ = recipes.chain_curve(r, "excess_risk")
        rows += [_row("curves", name, "excess_risk", int(x), float(a), float(b)) for x, a, b in zip(k, m, se)]
    for row in students.itertuples():
        for q in ("excess_risk", "accuracy", "noise_detrended"):
            rows.append(_row("student", row.teacher, q, row.teacher_kl, getattr(row, q), getattr(row, f"{q}_se")))
    for rec in records:
        if rec.claim.kind == "student-kl":
            name = rec.claim.config["teacher"].split(":", 1)[1]
            rows.append(_row("prop1", name, "student excess risk vs teacher KL", rec.predicted.value,
                             rec.measured.value, rec.measured.se, rec.claim.id))
    return rows


def _notes(records: list) -> list[str]:
    out = []
    for rec in records:
        if rec.claim.kind in ("paper-noise", "paper-accuracy") and rec.measured is not None:
            what = "loss-noise reduction" if rec.claim.kind == "paper-noise" else "accuracy gain"
            out.append(f"{rec.claim.config['teacher'].split(':', 1)[1]} vs deterministic teacher's student: {what} "
                       f"{rec.measured.value:.3g} +- {rec.measured.se:.2g} (paper: {rec.predicted.value:g}).")
    return out
