"""F13, Bayesian teachers sampled per visit (E24) and the data budget (E23) (DESIGN 2.10, 6 F13).

(a, b) The paper's MC-samples experiment as a law. A mean-field VI teacher (`teachers.vi`, Bayes by
backprop with the local reparameterisation trick) is fitted once on `teacher_n` labelled points of
`triangle` and sampled per visit: every step's target is the mean of S fresh posterior draws
(`teachers.pervisit.PerVisit`). The linear student (pinned gauge, float64) runs online SGD (b = 1,
from theta*, until its slowest mode has relaxed); each S is its own seed (`base.point_seed`). E24
predicts the stationary E[F - F*] = [F(theta_bar) - F*] + (gamma / b) [tr C / 4 + cross term], tr C =
a + b / S (`claims.transfer`, kinds E24 per S and E24-draws for the 1/S coefficient over the
independent points). `triangle`, not `paper`: the paper preset's slowest mode (lambda_min(H) =
7.9e-4 standardised) would need ~10^5 steps per point at this gamma. Panel (b): the students'
stationary accuracy against S, beside the Bayes accuracy (measured only).

(c) The data budget: a labelled budget of n points for the teacher (out-of-sample: an independent
sample of n, `fit_mode` out-of-sample) and n for the student, on `paper` (standardised), with the
realizable linear student trained to its empirical minimiser (`claims.recipes.finite_n`). E23 from
the teacher function alone (kind E23) for every teacher kind of `claims.protocol.TEACHERS`; the
labels' student against E18.
"""
from __future__ import annotations

import math

import pandas as pd

from .. import claims
from ..claims import protocol as P
from ..plots import finish, new_figure
from ..plots import neighborhood as nb
from ..threads import single_thread
from .base import FRAME_COLUMNS, Result, figure, pair_rows, point_seed, tally

SEED = 13
COLUMNS = [*FRAME_COLUMNS, "claim", "stationary"]
BUDGET_KINDS = tuple(P.TEACHERS)
COLORS = {**{label: f"C{i}" for i, label in enumerate(BUDGET_KINDS)}, "onehot": "0.3"}


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, claim: str = "",
         stationary: bool | None = None) -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, claim=claim, stationary=stationary)


def draws_config(s: dict) -> dict:
    """Panel (a)'s runs: online SGD of the linear student on triangle with the VI teacher per visit."""
    return {"task": "triangle", "student": "linear", "gauge": "pinned", "standardize": False, "init": "optimum",
            "init_scale": 0.0, "regime": "online", "gamma": s["gamma"], "batch": 1, "momentum": 0.0, "steps": "auto",
            "burn": s["burn"], "min_steps": s["min_steps"], "eval_every": s["eval_every"], "eval_n": s["eval_n"],
            "chains": s["chains"], "teacher": "trained:vi", "teacher_n": s["teacher_n"],
            "teacher_epochs": s["teacher_epochs"], "members": 3, "passes": 16, "p_drop": 0.1, "teacher_seed": SEED,
            "teacher_widths": tuple(s["draws_widths"]), "moment_draws": s["moment_draws"],
            "transfer_mc": s["transfer_mc"], "instruments": ("excess_risk", "dist2", "calibration")}


def budget_config(s: dict, n: int, seed: int) -> dict:
    """Panel (c)'s minimisers: n student points and an out-of-sample teacher fitted on n labelled points."""
    return {"task": "paper", "standardize": True, "student": "linear", "gauge": "pinned", "regime": "finite", "n": n,
            "chains": s["budget_chains"], "newton_steps": 30, "grad_tol": 1e-7, "seed": seed, "teacher_n": n,
            "teacher_epochs": s["teacher_epochs_budget"], "members": 3, "passes": 16, "p_drop": 0.1,
            "teacher_seed": seed, "teacher_widths": tuple(s["budget_widths"]), "fit_mode": "out-of-sample",
            "transfer_mc": s["transfer_mc"]}


@figure("F13", title="Teachers sampled per visit; the data budget", seed=SEED, claims=("E24", "E24-draws", "E23", "E18"),
        summary="A VI teacher sampled per visit with S draws: the student's neighborhood against E24 (a + b/S) and "
                "its accuracy; the student's excess risk against the data budget n for each teacher kind, against "
                "E23 from the teacher function.")
class F13:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(S=(1, 12), gamma=0.1, chains=16, burn=2.5, min_steps=600, eval_every=50, eval_n=1000,
                        teacher_n=1000, teacher_epochs=60, draws_widths=(32, 32), moment_draws=32, transfer_mc=2**12,
                        budget_n=(1000,), budget_kinds=("deterministic", "vi"), budget_chains=3, budget_labels=False,
                        teacher_epochs_budget=10, budget_widths=(32, 32))
        return dict(S=(1, 2, 4, 8, 12), gamma=0.1, chains=64, burn=3.0, min_steps=1000, eval_every=100, eval_n=4000,
                    teacher_n=1000, teacher_epochs=60, draws_widths=(32, 32), moment_draws=64, transfer_mc=2**13,
                    budget_n=(500, 1000, 2000, 4000), budget_kinds=BUDGET_KINDS, budget_chains=4, budget_labels=True,
                    teacher_epochs_budget=30, budget_widths=(128, 128))

    @staticmethod
    def measure(s: dict) -> Result:
        with single_thread():
            draws_rows, draws_records = _draws(s)
            budget_rows, budget_records = _budget(s)
        records = draws_records + budget_records
        return Result(pd.DataFrame(draws_rows + budget_rows, columns=COLUMNS), records,
                      notes=_notes(records) + [f"teacher fitting: {_fit_seconds(s):.0f} s in total."])

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(3, width=4.2, height=3.6)
        f = result.frame
        a = f[f.panel == "draws"]
        m = a[a.kind == "measured"]
        nb.measured_points(axes[0, 0], m.x, m.value, m.se, label="measured (stationary)", color="C0")
        p = a[a.kind == "E24"]
        nb.prediction(axes[0, 0], p.x, p.value, label="E24", color="C0")
        fit = a[a.kind == "a + b/S fit"]
        nb.prediction(axes[0, 0], fit.x, fit.value, label="a + b/S, weighted fit", color="0.4", style=":")
        nb.labels(axes[0, 0], "posterior draws per visit S", "stationary E[F - F*] (nats)",
                  f"(a) VI teacher per visit, gamma={s['gamma']:g}, +-2 SE")
        axes[0, 0].set_xscale("log")
        acc = f[f.panel == "accuracy"]
        nb.measured_points(axes[0, 1], acc[acc.kind == "measured"].x, acc[acc.kind == "measured"].value,
                           acc[acc.kind == "measured"].se, label="student accuracy", color="C0")
        bayes = acc[acc.kind == "Bayes accuracy"]
        if len(bayes):
            axes[0, 1].axhline(float(bayes.value.iloc[0]), color="0.3", ls="--", lw=1, label="Bayes accuracy")
        nb.labels(axes[0, 1], "posterior draws per visit S", "accuracy (stationary)", "(b) student accuracy, +-2 SE")
        axes[0, 1].set_xscale("log")
        c = f[f.panel == "budget"]
        for name in [*s["budget_kinds"], "onehot"]:
            sub = c[c.series == name]
            mm = sub[sub.kind == "measured"]
            color = COLORS[name]
            nb.measured_points(axes[0, 2], mm.x, mm.value, mm.se, label=name, color=color)
            pp = sub[sub.kind.isin(["E23", "E18"])]
            nb.prediction(axes[0, 2], pp.x, pp.value, label="_nolegend_", color=color)
        nb.loglog(axes[0, 2], "data budget n (teacher's and student's points)", "student excess risk (nats)",
                  "(c) data budget: minimiser vs E23 (lines)")
        return finish(fig, f"F13: (a, b) triangle, VI teacher {s['draws_widths']} on {s['teacher_n']} labelled points, "
                           f"per-visit draws; linear student (pinned, float64), online SGD b=1, {s['chains']} chains "
                           f"from theta*, each S its own seed; SE: chains + eval sample ({s['eval_n']}). (c) paper "
                           f"(standardised), teachers {s['budget_widths']} fitted out of sample on n labelled points, "
                           f"linear student's minimiser on n points, {s['budget_chains']} replicas, exact theta*; E23 "
                           "on fresh inputs. Bars +-2 SE.")


def _draws(s: dict) -> tuple[list[dict], list]:
    """Panels (a, b): one E24 claim per S (independent seeds) and the E24-draws fit over them."""
    base = draws_config(s)
    seeds = [point_seed(SEED, i) for i in range(len(s["S"]))]
    curve = {**base, "samples": list(s["S"]), "seeds": seeds}
    records, rows = [], []
    for c in claims.transfer.draws_points(curve):
        rec = claims.make("E24", f"E24-vi-S{c['teacher_draws']}", **c).check()
        records.append(rec)
        S = c["teacher_draws"]
        rows += pair_rows("draws", "vi", S, rec, "E24")
        acc = claims.recipes.stationary(c, "accuracy")
        rows.append(_row("accuracy", "vi", "measured", S, acc.value, acc.se, "", acc.stationary))
    rows.append(_row("accuracy", "vi", "Bayes accuracy", math.nan, _bayes_accuracy(base)))
    rec = claims.make("E24-draws", "E24-draws-vi", **curve).check()
    records.append(rec)
    if rec.measured is not None:
        a, b = rec.measured.info["intercept"], rec.measured.value
        rows += [_row("draws", "vi", "a + b/S fit", S, a + b / S, math.nan, rec.claim.id) for S in s["S"]]
    return rows, records


def _bayes_accuracy(cfg: dict) -> float:
    import synthetic

    return float(synthetic.make_task(cfg["task"]).bayes_accuracy().value)


def _budget(s: dict) -> tuple[list[dict], list]:
    """Panel (c): E23 per (teacher kind, n), E18 for the labels, each n its own seed."""
    records, rows = [], []
    for i, n in enumerate(s["budget_n"]):
        cfg = budget_config(s, int(n), point_seed(SEED, 100 + i))
        for kind in s["budget_kinds"]:
            rec = claims.make("E23", f"E23-{kind}-n{n}", **P.teacher_config(cfg, kind)).check()
            records.append(rec)
            rows += pair_rows("budget", kind, n, rec, "E23")
        if not s["budget_labels"]:
            continue
        labels = {k: v for k, v in cfg.items() if not k.startswith("teacher") and k not in ("fit_mode", "members",
                                                                                          "passes", "p_drop")}
        rec = claims.make("E18", f"E18-onehot-n{n}", **{**labels, "teacher": "onehot"}).check()
        records.append(rec)
        rows += pair_rows("budget", "onehot", n, rec, "E18")
    return rows, records


def _fit_seconds(s: dict) -> float:
    """The fitting time of every teacher of the figure (seconds, `claims.protocol.fit_seconds`)."""
    cfgs = [{**draws_config(s), "teacher_draws": s["S"][0]}]
    cfgs += [P.teacher_config(budget_config(s, int(n), point_seed(SEED, 100 + i)), label)
             for i, n in enumerate(s["budget_n"]) for label in s["budget_kinds"]]
    return P.fit_seconds(cfgs)


def _notes(records: list) -> list[str]:
    out = []
    for r in records:
        if r.claim.kind == "E24-draws" and r.measured is not None:
            out.append(f"VI per visit: the 1/S coefficient of the neighborhood {r.measured.value:.3g} +- "
                       f"{r.measured.se:.2g} (E24: {r.predicted.value:.3g} +- {r.predicted.se:.2g}, {r.verdict.verdict}).")
    for kind in ("E24", "E23", "E18"):
        out += tally(records, kind)
    return out
