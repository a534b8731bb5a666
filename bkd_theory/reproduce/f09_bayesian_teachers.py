"""F9, trained teachers in the paper's protocol (DESIGN 2.10, 6 F9).

Paper task (standardised inputs), a labelled training set of n points per chain (the loop's
layout). Teachers: 2-layer ReLU MLPs of `teacher_widths` trained by Adam for `teacher_epochs`
epochs, of every kind of `claims.protocol.TEACHERS` (deterministic, deep ensemble, MC dropout,
last-layer Laplace with full, Kronecker and diagonal structure and the marginal-likelihood prior,
mean-field VI, MSE (Brier)-trained, temperature-scaled), fitted three ways (`teachers.fitting`):
in-sample (on the chain's own n points, the paper's protocol), cross-fitted (`folds` folds: a
point's target comes from the teacher not fitted on its fold) and out-of-sample (one teacher on an
independent sample of n points, the same data budget).

- (a, b) teacher quality against the TRUE p (`claims.protocol.chain_quality`): KL(p || p~) at the
  student's training points (the targets it trains on) and at `report_n` fresh points, mean +- SE
  over chains; ECE against p and the signed over-confidence are in `F9.teachers.csv`. Claims
  `teacher-kl` (Sign): each other kind is closer to p than the deterministic net, at both places.
- (c) the reliability diagram against p at chain 0's training points (in-sample): confidence
  max_k p~_k against the true probability of the teacher's top class (bins of >= 20 points).
- (d) E23: the realizable linear student (pinned gauge) trained to its empirical minimiser on the n
  points with the teacher's targets, against E23 from the teacher function alone (bias
  F(theta_1) - F* plus variance and cross term over n; `claims.transfer`). Out of sample E23's
  premise holds (kind E23, Equal). In-sample and cross-fitted the teacher is a function of the
  student's own sample (in-sample: of the very labels; cross-fitted: fold j's teacher was fitted on
  the other folds, which the student also trains on), so the comparison is kind E23-coupled
  (Finding): the gap is the coupling, measured.
- (e, f) the paper's student (2 x 128 ReLU MLP, batch 1, lr 5e-4, momentum 0.9, float32, epoch
  shuffling) on the same n points with the in-sample teachers' targets, onehot labels and the exact
  bcp: end accuracy (beside the Bayes accuracy) and loss noise (detrended std of the validation
  loss over the last half). Claims: `paper-accuracy` and `paper-noise` (Findings: the paper's
  "+4.27 %" and "30 % less noise" analogues, Bayesian against the deterministic teacher's
  student), `loss-noise-ratio` (Sign), `paired-difference` (KD from the teacher closest to p at the
  training points beats labels; the student of the teacher farther from p has the larger excess risk).
"""
from __future__ import annotations

import math

import pandas as pd

from .. import claims
from ..claims import learning as L
from ..claims import protocol as P
from ..claims import recipes
from ..plots import finish, new_figure
from ..plots import learning as lp
from ..plots import neighborhood as nb
from ..stats import mean_se
from ..teachers import quality as Q
from .base import FRAME_COLUMNS, Result, figure, tally

SEED = 9
REFERENCE = ("onehot", "bcp")
MODES = ("in-sample", "cross-fitted", "out-of-sample")
MARKERS = {"in-sample": "o", "cross-fitted": "s", "out-of-sample": "^"}
COLUMNS = [*FRAME_COLUMNS, "mode", "claim"]
METRICS = ("kl", "ece", "overconfidence")
RELIABILITY_MIN = 20  # points a reliability bin needs to be drawn


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, mode: str = "",
         claim: str = "") -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, mode=mode, claim=claim)


def fit_base(s: dict, mode: str) -> dict:
    """The teachers' fit keys in `mode` (shared by the quality, E23 and student claims, so a fitted
    teacher is reused through the memo)."""
    return {"task": "paper", "standardize": True, "regime": "finite", "n": s["n"], "seed": SEED, "chains": s["chains"],
            "teacher_n": s["n"], "teacher_epochs": s["teacher_epochs"], "members": s["members"], "passes": s["passes"],
            "p_drop": s["p_drop"], "teacher_seed": SEED, "teacher_widths": tuple(s["teacher_widths"]),
            "folds": s["folds"], "fit_mode": mode, "report_n": s["report_n"], "transfer_mc": s["transfer_mc"]}


def linear_config(s: dict, mode: str) -> dict:
    return {**fit_base(s, mode), "student": "linear", "gauge": "pinned", "newton_steps": 30, "grad_tol": 1e-7}


def student_config(s: dict) -> dict:
    """The paper's student on the same n points, in-sample teachers (teacher filled in per claim)."""
    return {**L.PAPER, **fit_base(s, "in-sample"), "teacher": "onehot", "steps": s["n"] * s["epochs"],
            "eval_every": s["eval_every"], "eval_n": s["eval_n"], "end_window": s["end_window"], "curve": "val_loss",
            "detrend": True}


def spec_config(cfg: dict, name: str) -> dict:
    """`cfg` with the student's teacher `name`: onehot / bcp as specs, else a trained label."""
    return {**cfg, "teacher": name} if name in REFERENCE else P.teacher_config(cfg, name)


@figure("F9", title="Trained teachers in the paper's protocol", seed=SEED,
        claims=("teacher-kl", "E23", "E23-coupled", "paired-difference", "loss-noise-ratio", "paper-noise",
                "paper-accuracy"),
        summary="Every teacher kind fitted in-sample, cross-fitted and out-of-sample against the true p; the linear "
                "student's minimiser against E23 from the teacher function; the paper's student: accuracy and loss "
                "noise against the deterministic teacher's student and labels.")
class F9:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(n=500, chains=2, teacher_widths=(32, 32), teacher_epochs=60, members=3, passes=16, p_drop=0.1,
                        folds=2, labels=("deterministic", "vi", "laplace"), modes=("in-sample", "out-of-sample"),
                        report_n=2000, transfer_mc=2**12, students=("deterministic", "vi", "laplace"), epochs=10,
                        eval_every=50, eval_n=1000, end_window=0.1)
        return dict(n=1000, chains=4, teacher_widths=(128, 128), teacher_epochs=30, members=3, passes=16, p_drop=0.1,
                    folds=2, labels=tuple(P.TEACHERS), modes=MODES, report_n=5000, transfer_mc=2**13,
                    students=("deterministic", "ensemble", "mc_dropout", "laplace", "vi"), epochs=20, eval_every=200,
                    eval_n=2500, end_window=0.1)

    @staticmethod
    def measure(s: dict) -> Result:
        teachers = _teacher_table(s)
        records = _quality_claims(s) + _e23_claims(s)
        students = _student_table(s, teachers)
        records += _student_claims(s, teachers)
        rows = _teacher_rows(teachers) + _e23_rows(records) + _student_rows(students) + _reliability_rows(s)
        return Result(pd.DataFrame(rows, columns=COLUMNS), records, {"teachers": teachers, "students": students},
                      notes=_notes(records, s))

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(3, 2, width=4.4, height=3.4)
        f = result.frame
        for ax, where, title in ((axes[0, 0], "train", "(a) teacher KL(p || p~) at the student's training points"),
                                 (axes[0, 1], "fresh", "(b) teacher KL(p || p~) at fresh points")):
            _by_mode(ax, f[(f.panel == "teacher") & (f.kind == f"kl_{where}")], list(s["labels"]), s["modes"])
            ax.set_xscale("log")
            nb.no_minor_labels(ax)
            ax.set_xlabel("KL(p || p~) (nats), +-2 SE over chains")
            ax.set_title(title, fontsize=8.5)
        _reliability(axes[0, 2], f[f.panel == "reliability"])
        _e23(axes[1, 0], f[f.panel == "e23"], s["modes"])
        st = result.tables["students"].set_index("teacher")
        order = [*s["students"], *REFERENCE]
        sub = st.reindex(order)
        for j, ref in enumerate(("deterministic", "onehot")):
            lp.estimates(axes[1, 1], order, sub[f"accuracy_minus_{ref}"], sub[f"accuracy_minus_{ref}_se"],
                         offset=0.15 * (2 * j - 1), fmt="os"[j], series=f"minus the {ref} student",
                         reference_value=0.0 if j else None)
        axes[1, 1].set_xlabel(f"end accuracy difference, paired (the paper: +{L.PAPER_ACCURACY_GAIN:g})")
        axes[1, 1].set_title("(e) paper's student, accuracy (in-sample teachers), +-2 SE", fontsize=8.5)
        axes[1, 1].legend(fontsize=6, loc="upper right")
        lp.estimates(axes[1, 2], order, sub["noise_detrended"], sub["noise_detrended_se"],
                     reference_value=(1 - L.PAPER_NOISE_REDUCTION) * st.loc["deterministic", "noise_detrended"])
        axes[1, 2].set_xlabel("val-loss std, last half, detrended")
        axes[1, 2].set_title("(f) paper's student, loss noise, +-2 SE\n(dashed: the paper's 30 % below "
                             "the deterministic)", fontsize=8)
        return finish(fig, f"F9: paper task (standardised), n={s['n']:,} training points per chain, {s['chains']} chains. "
                           f"Teachers: ReLU MLPs {s['teacher_widths']}, {s['teacher_epochs']} epochs Adam; in-sample, "
                           f"cross-fitted ({s['folds']} folds), out-of-sample (an independent n); quality against the "
                           f"true p, fresh points: {s['report_n']:,}. (d) linear student's minimiser vs E23. (e, f) MLP "
                           f"2x128, b=1, lr 5e-4, momentum 0.9, {s['epochs']} epochs; eval set {s['eval_n']:,}.")


def _teacher_table(s: dict) -> pd.DataFrame:
    """Per (label, mode, where): KL, ECE, over-confidence against p, mean +- SE over chains."""
    rows = []
    for mode in s["modes"]:
        for label in s["labels"]:
            per = P.chain_quality(P.teacher_config(fit_base(s, mode), label))
            for where in ("train", "fresh"):
                est = Q.over_seeds([c[where] for c in per])
                row = {"teacher": label, "mode": mode, "where": where, "chains": len(per)}
                for m in METRICS:
                    row[m], row[f"{m}_se"] = est[m].value, est[m].se
                rows.append(row)
    return pd.DataFrame(rows)


def _quality_claims(s: dict) -> list:
    out = []
    for mode in s["modes"]:
        base = fit_base(s, mode)
        for label in s["labels"]:
            if label == "deterministic":
                continue
            for where in ("train", "fresh"):
                out.append(claims.make("teacher-kl", f"teacher-kl-{label}-{mode}-{where}",
                                       **{**P.teacher_config(base, label), "than": "trained:deterministic",
                                          "where": where}).check())
    return out


def _e23_claims(s: dict) -> list:
    out = []
    for mode in s["modes"]:
        kind = "E23" if mode == "out-of-sample" else "E23-coupled"
        for label in s["labels"]:
            out.append(claims.make(kind, f"E23-{label}-{mode}", **P.teacher_config(linear_config(s, mode), label)).check())
    return out


def _student_table(s: dict, teachers: pd.DataFrame) -> pd.DataFrame:
    """Per student: end excess risk, accuracy and val loss (SE: seeds + eval sample), loss noise
    (raw, detrended) with SE, its ratio to the deterministic teacher's student, the paired accuracy
    differences to that student and to the labels' student, and the teacher's KL at the training points."""
    base, bayes = student_config(s), L.bayes_accuracy(student_config(s))
    kl = _training_kl(teachers)
    names = [*s["students"], *REFERENCE]
    recipes.prefetch([spec_config(base, name) for name in names])  # made together, stacked (`recipes.prefetch`)
    rows = []
    for name in names:
        cfg = spec_config(base, name)
        row: dict = {"teacher": name, "seeds": base["chains"], "eval_n": base["eval_n"], "bayes_accuracy": bayes.value,
                     "teacher_kl_train": kl.get(name, math.nan)}
        for q in ("excess_risk", "accuracy", "val_loss"):
            e = L.end(cfg, q)
            row[q], row[f"{q}_se"] = e.value, e.se
        for det, suffix in ((False, ""), (True, "_detrended")):
            row["noise" + suffix], row[f"noise{suffix}_se"], _ = mean_se(L.noise({**cfg, "detrend": det}))
        r = L.noise_ratio({**cfg, "than": "trained:deterministic"})
        row["noise_ratio_to_deterministic"], row["noise_ratio_to_deterministic_se"] = r.value, r.se
        for ref in ("trained:deterministic", "onehot"):
            d = L.paired({**cfg, "than": ref, "quantity": "accuracy"})
            row[f"accuracy_minus_{ref.split(':')[-1]}"], row[f"accuracy_minus_{ref.split(':')[-1]}_se"] = d.value, d.se
        rows.append(row)
    return pd.DataFrame(rows)


def _training_kl(teachers: pd.DataFrame) -> dict[str, float]:
    sel = teachers[(teachers["mode"] == "in-sample") & (teachers["where"] == "train")]
    return dict(zip(sel["teacher"], sel["kl"]))


def _student_claims(s: dict, teachers: pd.DataFrame) -> list:
    """The paper's claims on its student (module docstring)."""
    base, kl = student_config(s), _training_kl(teachers)
    det = "trained:deterministic"
    out = []
    for b in [t for t in s["students"] if t != "deterministic"]:
        cfg = spec_config(base, b)
        far, near = ("deterministic", b) if kl["deterministic"] >= kl[b] else (b, "deterministic")
        out.append(claims.check("paired-difference", f"excess-risk-{far}-minus-{near}", spec_config(base, far),
                                than=spec_config(base, near)["teacher"], quantity="excess_risk",
                                basis=f"teacher KL at the training points {kl[far]:.3g} > {kl[near]:.3g}"))
        out.append(claims.check("loss-noise-ratio", f"noise-deterministic-over-{b}", spec_config(base, "deterministic"),
                                than=cfg["teacher"], reference=1.0, basis="the paper: Bayesian teachers give less noisy students"))
        out.append(claims.check("paper-noise", f"paper-noise-{b}", cfg, than=det))
        out.append(claims.check("paper-accuracy", f"paper-accuracy-{b}", cfg, than=det, quantity="accuracy"))
    best = min(s["students"], key=kl.get)
    out.append(claims.check("paired-difference", f"excess-risk-onehot-minus-{best}", {**base, "teacher": "onehot"},
                            than=spec_config(base, best)["teacher"], quantity="excess_risk",
                            basis=f"KD from the teacher closest to p at the training points ({best}) beats labels"))
    return out


def _teacher_rows(teachers: pd.DataFrame) -> list[dict]:
    return [_row("teacher", r.teacher, f"{m}_{r.where}", i, getattr(r, m), getattr(r, f"{m}_se"), r.mode)
            for i, r in enumerate(teachers.itertuples()) for m in METRICS]


def _e23_rows(records: list) -> list[dict]:
    rows = []
    for rec in records:
        if rec.claim.kind in ("E23", "E23-coupled") and rec.measured is not None:
            mode = rec.claim.config["fit_mode"]
            label = rec.claim.id[len("E23-"):-len(mode) - 1]
            rows.append(_row("e23", label, "measured vs E23", rec.predicted.value, rec.measured.value, rec.measured.se,
                             mode, rec.claim.id))
            rows.append(_row("e23", label, "E23 se", rec.predicted.value, rec.predicted.value, rec.predicted.se, mode,
                             rec.claim.id))
    return rows


def _student_rows(students: pd.DataFrame) -> list[dict]:
    return [_row("student", r.teacher, q, i, getattr(r, q), getattr(r, f"{q}_se"), "in-sample")
            for i, r in enumerate(students.itertuples()) for q in ("excess_risk", "accuracy", "noise_detrended")]


def _reliability_rows(s: dict) -> list[dict]:
    """Reliability against p at chain 0's training points, in-sample teachers."""
    import synthetic

    from ..claims import recipes

    task = synthetic.make_task("paper", standardize=True)
    base = fit_base(s, "in-sample")
    x = P.training_points(base)[0]
    rows = []
    for label in [t for t in ("deterministic", "vi", "laplace") if t in s["labels"]]:
        cfg = P.teacher_config(base, label)
        t = recipes.trained_teacher(cfg, recipes.trained_kind(cfg["teacher"]))
        for r in Q.reliability(t, x, task.log_bcp(x)).itertuples():
            if r.count >= RELIABILITY_MIN:
                rows.append(_row("reliability", label, "true prob of top class", r.confidence, r.true_prob,
                                 r.true_prob_se, "in-sample"))
    return rows


def _by_mode(ax, sub: pd.DataFrame, labels: list[str], modes: tuple[str, ...]) -> None:
    for j, mode in enumerate(modes):
        m = sub[sub["mode"] == mode].set_index("series").reindex(labels)
        lp.estimates(ax, labels, m["value"], m["se"], offset=0.25 * (j - (len(modes) - 1) / 2), fmt=MARKERS[mode],
                     series=mode)
    ax.legend(fontsize=6)


def _reliability(ax, sub: pd.DataFrame) -> None:
    for label, g in sub.groupby("series", sort=False):
        ax.errorbar(g["x"], g["value"], yerr=2 * g["se"], fmt="o-", ms=3, lw=1, color=lp.color(label), label=label)
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=0.8, label="calibrated against p")
    ax.set_xlabel("teacher confidence max_k p~_k")
    ax.set_ylabel("true probability of its top class")
    ax.set_title("(c) reliability against p, training points (in-sample)", fontsize=8.5)
    ax.legend(fontsize=6)


def _e23(ax, sub: pd.DataFrame, modes: tuple[str, ...]) -> None:
    m = sub[sub.kind == "measured vs E23"]
    p = sub[sub.kind == "E23 se"].set_index("claim")["se"]
    for mode in modes:
        g = m[m["mode"] == mode]
        ax.errorbar(g["x"], g["value"], xerr=2 * p.reindex(g["claim"]).to_numpy(), yerr=2 * g["se"], fmt=MARKERS[mode],
                    ms=4, capsize=2, lw=0.8, label=mode)
    if len(m):
        hi = 1.1 * float(max(m["x"].max(), m["value"].max()))
        ax.plot([0, hi], [0, hi], color="0.5", ls="--", lw=0.8, label="y = x")
    ax.set_xlabel("E23 from the teacher function (nats)")
    ax.set_ylabel("linear student's minimiser: excess risk (nats)")
    ax.set_title("(d) student from teacher (E23), +-2 SE", fontsize=8.5)
    ax.legend(fontsize=6)


def _notes(records: list, s: dict) -> list[str]:
    out = tally(records, "teacher-kl", "holds", "hold") + tally(records, "E23")
    for rec in records:
        if rec.claim.kind == "E23-coupled" and rec.measured is not None:
            out.append(f"{rec.claim.id}: measured {rec.measured.value:.4g} +- {rec.measured.se:.2g} vs E23 "
                       f"{rec.predicted.value:.4g} (z {rec.verdict.z:+.1f}).")
        if rec.claim.kind in ("paper-noise", "paper-accuracy") and rec.measured is not None:
            what = "loss-noise reduction" if rec.claim.kind == "paper-noise" else "accuracy gain"
            out.append(f"{rec.claim.id}: {what} {rec.measured.value:.3g} +- {rec.measured.se:.2g} "
                       f"(paper: {rec.predicted.value:g}).")
    fit = P.fit_seconds(P.teacher_config(fit_base(s, m), label) for m in s["modes"] for label in s["labels"])
    out.append(f"teacher fitting: {fit:.0f} s in total ({len(s['labels'])} kinds x {len(s['modes'])} modes).")
    return out
