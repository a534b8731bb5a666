"""F11, the KD mixture: E[F - F*] against lam and the best lam, stationary and at finite n (DESIGN 2.10, E20).

Triangle task, linear softmax student in the pinned gauge, float64, batch 1, no momentum. Targets
t = (1 - lam) e_y + lam t_T for additive teachers at three noise levels and one biased teacher
(temperature:TAU). Stationary: each lam point is its own run with its own seed (`base.point_seed`)
from theta*, sized by `claims.recipes.auto_steps`; the measured best lam is the vertex of the
weighted parabola through the points (claim E20-lambda). Finite n: the minimisers of each replica's
n frozen points at every lam (the same sets for every lam; claim E20-lambda-n). Curves: E20
(`theory.distillation.KDNoise`). Every verdict is a claim record (`claims.make(...).check()`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import claims
from ..claims import recipes
from ..plots import finish, new_figure
from ..plots import neighborhood as nb
from .base import FRAME_COLUMNS, Result, figure, point_seed

SEED = 11
COLUMNS = [*FRAME_COLUMNS, "claim"]


def _base(s: dict) -> dict:
    return {"task": "triangle", "student": "linear", "gauge": "pinned", "init": "optimum", "init_scale": 0.0,
            "steps": "auto", "burn": s["burn"], "min_steps": s["min_steps"], "chains": s["chains"], "eval_n": s["eval_n"],
            "eval_every": s["eval_every"], "batch": 1, "momentum": 0.0, "gamma": s["gamma"], "seed": SEED}


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, claim: str = "") -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, claim=claim)


def _kd(teacher: str):
    from ..theory.distillation import kd_noise
    from ..theory.integrate import integrator

    task, student, t = recipes.objects({"task": "triangle", "student": "linear", "gauge": "pinned", "teacher": teacher})
    return kd_noise(task, student, t, integrator(task, student, t).nodes)


@figure("F11", title="KD mixture", seed=SEED, claims=("E20-lambda", "E20-lambda-n", "E20-margin"),
        summary="E[F - F*] vs the KD weight lam (stationary and finite n) with E20; measured vs predicted best lam.")
class F11:
    @staticmethod
    def settings(quick: bool) -> dict:
        teachers = ("additive:0.005", "additive:0.02", "additive:0.08", "temperature:1.2")
        if quick:
            return dict(teachers=teachers, gamma=0.05, chains=16, burn=2.0, min_steps=400, eval_every=50, eval_n=1000,
                        lams=(0.2, 0.6, 1.0), lams_biased=(0.1, 0.4, 0.7), n=2000, replicas=24,
                        lams_n=(0.0, 0.5, 1.0), lams_n_biased=(0.0, 0.15, 0.3), fine=41, margins=False)
        return dict(teachers=teachers, gamma=0.05, chains=64, burn=2.5, min_steps=1000, eval_every=50, eval_n=4000,
                    lams=(0.0, 0.25, 0.5, 0.75, 1.0), lams_biased=(0.1, 0.3, 0.5, 0.7), n=2000, replicas=128,
                    lams_n=(0.0, 0.25, 0.5, 0.75, 1.0), lams_n_biased=(0.0, 0.1, 0.2, 0.3), fine=101, margins=True)

    @staticmethod
    def measure(s: dict) -> Result:
        base, rows, records = _base(s), [], []
        seeds = iter(range(10_000))
        for t in s["teachers"]:
            biased = not t.startswith("additive")
            lams = s["lams_biased" if biased else "lams"]
            cfg = {**base, "teacher": t, "lams": lams, "seeds": tuple(point_seed(SEED, next(seeds)) for _ in lams)}
            rec = claims.make("E20-lambda", f"E20-lambda-{t}", **cfg).check()
            records.append(rec)
            rows += _points("stationary", t, rec)
            lams_n = s["lams_n_biased" if biased else "lams_n"]
            rec_n = claims.make("E20-lambda-n", f"E20-lambda-n-{t}", task="triangle", student="linear", gauge="pinned",
                                teacher=t, n=s["n"], chains=s["replicas"], seed=point_seed(SEED, next(seeds)),
                                lams=lams_n, newton_steps=12, grad_tol=1e-7).check()
            records.append(rec_n)
            rows += _points("finite n", t, rec_n)
            rows += _curves(t, s)
        if s["margins"]:
            for t, against in (("additive:0.02", 0.0), ("additive:0.08", 1.0)):
                records.append(claims.make("E20-margin", f"E20-margin-{against:g}-{t}", **base, teacher=t, against=against,
                                           seeds=(point_seed(SEED, next(seeds)), point_seed(SEED, next(seeds)))).check())
        return Result(pd.DataFrame(rows, columns=COLUMNS), records, notes=_notes(records))

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(3, 1, width=4.0)
        f = result.frame
        sel = lambda **kw: f[np.logical_and.reduce([f[k] == v for k, v in kw.items()])]  # noqa: E731
        for ax, panel, title in ((axes[0, 0], "stationary", f"(a) stationary, SGD gamma={s['gamma']:g}"),
                                 (axes[0, 1], "finite n", f"(b) minimiser of n={s['n']} frozen points")):
            for i, t in enumerate(s["teachers"]):
                m, c = sel(panel=panel, series=t, kind="measured"), sel(panel=panel, series=t, kind="E20")
                nb.measured_points(ax, m.x, m.value, m.se, label=t, color=f"C{i}")
                nb.prediction(ax, c.x, c.value, label="E20" if i == 0 else "_nolegend_", color=f"C{i}")
            ax.set_yscale("log")
            nb.labels(ax, "KD weight lam", "E[F - F*] (nats)", title, fontsize=5.5)
        ax = axes[0, 2]
        for j, (panel, marker) in enumerate((("stationary", "o"), ("finite n", "s"))):
            b = sel(panel=panel, kind="best lam")
            for i, t in enumerate(s["teachers"]):
                r = b[b.series == t]
                if len(r):
                    ax.errorbar(r.x, r.value, yerr=2 * r.se, fmt=marker, color=f"C{i}", ms=3.5,
                                label=f"{panel}" if i == 0 else "_nolegend_")
        ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
        nb.labels(ax, "predicted best lam (lambda_star, lambda_star_n)", "measured best lam (vertex, +-2 SE)",
                  "(c) best lam: measured vs E20", fontsize=5.5)
        return finish(fig, f"F11: triangle, linear softmax student (pinned gauge), float64, batch 1. (a) {s['chains']} "
                           f"chains from theta* per lam point, own seed each, last half averaged; (b) {s['replicas']} "
                           f"replicas of n={s['n']} frozen points, shared across lam. Curves: E20. Bars +-2 SE.")


def _points(panel: str, teacher: str, rec) -> list[dict]:
    """The measured lam grid of a claim record and its best lam (vertex) against the prediction."""
    rows = []
    if rec.measured is None:
        return rows
    info = rec.measured.info
    for lam, v, se in zip(info["lams"], info["excess_risk"], info["excess_risk_se"]):
        rows.append(_row(panel, teacher, "measured", lam, v, se, rec.claim.id))
    rows.append(_row(panel, teacher, "best lam", rec.predicted.value, rec.measured.value, rec.measured.se, rec.claim.id))
    return rows


def _curves(teacher: str, s: dict) -> list[dict]:
    """E20 on a fine lam grid: lam^2 B / 2 + gamma sigma^2(lam) / 4 and lam^2 B / 2 + tr H^+ C(lam) / 2n."""
    kd = _kd(teacher)
    rows = []
    for lam in np.linspace(0.0, 1.0, s["fine"]):
        rows.append(_row("stationary", teacher, "E20", lam, kd.neighborhood(float(lam), s["gamma"])))
        rows.append(_row("finite n", teacher, "E20", lam, kd.finite_n(float(lam), s["n"])))
    return rows


def _notes(records: list) -> list[str]:
    out = []
    for r in records:
        if r.measured is None:
            out.append(f"{r.claim.id}: {r.verdict.verdict} ({r.verdict.detail})")
            continue
        exact = r.predicted.info.get("lambda_star_exact_bias")
        beside = "" if exact is None else f"; without E20's expansion in the bias {exact:.4g}"
        out.append(f"{r.claim.id}: predicted {r.predicted.value:.4g}, measured {r.measured.value:.4g} +- "
                   f"{r.measured.se:.2g} ({r.verdict.verdict}, z = {r.verdict.z:+.1f}){beside}.")
    return out
