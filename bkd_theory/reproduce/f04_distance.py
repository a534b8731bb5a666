"""F4, T1 and T3: E||theta_k - theta*||^2 vs k with the bounds E13/E15 and the Lyapunov value E17'.

Triangle task, linear softmax student in the pinned gauge, float64, online SGD, batch 1, chains
started at theta* + 0.3 N(0, I). Three runs, each with its own seed (`base.point_seed`): bcp at
gamma = 1/calL (T1, the largest step size it admits) and onehot and Dirichlet(1) at 1/(2 calL)
(T3). The claims are the library's kinds, so the bounds are judged as `bkd check` judges them:
- `T1`, `T3` (`recipes.bound_curve` / `measured_curve`, rule `verdicts.Bound`): the bound starts
  from the run's own initial points (d0 = mean ||theta_0 - theta*||^2 over its chains); mu and L
  are local, the extreme Hessian eigenvalues over theta* and points of the ball of radius `radius`
  around it (stated in each record, with the largest distance the run visited); calL is E12 on a
  training set of 10^4 inputs (Gaussian inputs are unbounded: an online run sees more). Verdicts
  holds / violated / vacuous.
- `E17'` on the same T3 runs: the stationary E||theta - theta*||^2 (last-half time average per
  chain, SE across chains, stationarity per quantity) vs tr S to next order; the first-order
  Lyapunov trace tr S (E17') is drawn beside it. A run too short to relax reads "not stationary".
Panels: (a) T1; (b) T3 with tr S; (c) looseness measured / bound. x = iteration k.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from .. import claims
from ..claims import recipes
from ..plots import finish, new_figure
from ..plots import neighborhood as nb
from ..plots import theorems as tp
from ..theory.bounds import theorem
from .base import FRAME_COLUMNS, Result, figure, point_seed

SEED = 4
RUNS = (("T1", "bcp"), ("T3", "onehot"), ("T3", "dirichlet:1"))
COLORS = {"bcp": "C1", "onehot": "C0", "dirichlet:1": "C2"}
COLUMNS = [*FRAME_COLUMNS, "claim"]


def _base(s: dict) -> dict:
    """The run configuration shared by the T and E17' claims (every key of both kinds, so they read one run)."""
    return {"task": "triangle", "student": "linear", "gauge": "pinned", "init": "perturbed", "init_scale": s["init_scale"],
            "radius": s["radius"], "steps": s["steps"], "chains": s["chains"], "eval_every": s["eval_every"],
            "eval_n": s["eval_n"], "batch": 1, "momentum": 0.0, "burn": 3.0}


def _rows(panel: str, series: str, kind: str, k: np.ndarray, values: np.ndarray, se: np.ndarray, claim: str) -> list[dict]:
    return [dict(panel=panel, series=series, kind=kind, x=int(x), value=float(v), se=float(e), claim=claim)
            for x, v, e in zip(k, values, se)]


@figure("F4", title="Distance to the optimum (T1, T3)", seed=SEED, claims=("T1", "T3", "E17'"),
        summary="E||theta_k - theta*||^2 vs k: bcp at 1/calL with E13; onehot, Dirichlet at 1/(2 calL) with E15, E17'.")
class F4:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(steps=1000, chains=32, eval_every=10, eval_n=500, init_scale=0.3, radius=2.0)
        return dict(steps=20_000, chains=256, eval_every=100, eval_n=500, init_scale=0.3, radius=2.0)

    @staticmethod
    def measure(s: dict) -> Result:
        rows, records = [], []
        for i, (th, teacher) in enumerate(RUNS):
            cfg = {**_base(s), "teacher": teacher, "theorem": th, "seed": point_seed(SEED, i)}
            c, _ = recipes.bound_constants({**cfg, "gamma": 1.0})
            cfg["gamma"] = theorem(th).admissible(c)  # the largest step size the theorem admits
            rec = claims.make(th, f"{th}-{teacher}", **cfg).check()
            records.append(rec)
            rows += _curve_rows(rec, "a" if th == "T1" else "b", teacher)
            if th == "T3":
                records.append(claims.make("E17'", f"E17'-{teacher}", **cfg).check())
                rows += _stationary_rows(records[-1], teacher, cfg)
        return Result(pd.DataFrame(rows, columns=COLUMNS), records, notes=_notes(records))

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(3)
        f = result.frame
        for rec in (r for r in result.records if r.claim.kind in ("T1", "T3")):
            t, cid = rec.claim.config["teacher"], rec.claim.id
            ax = axes[0, 0] if rec.claim.kind == "T1" else axes[0, 1]
            m, b = f[(f.claim == cid) & (f.kind == "measured")], f[(f.claim == cid) & (f.kind == "bound")]
            g = rec.claim.config["gamma"]
            tp.curve_with_band(ax, m.x, m.value, m.se, label=f"{t}, gamma = {g:.3g} ({rec.verdict.verdict})",
                               color=COLORS[t], log=True)
            tp.prediction_line(ax, b.x, b.value, label=f"{theorem(rec.claim.kind).tag} bound, {t}", color=COLORS[t])
            r = f[(f.claim == cid) & (f.kind == "measured / bound")]
            tp.curve_with_band(axes[0, 2], r.x, r.value, r.se, label=t, color=COLORS[t], log=True)
        for t in ("onehot", "dirichlet:1"):
            lv = f[(f.series == t) & (f.kind == "E17' tr S")]
            if len(lv):
                tp.level(axes[0, 1], float(lv.value.iloc[0]), label=f"E17' tr S, {t}", color=COLORS[t])
        tp.level(axes[0, 2], 1.0, label="bound", color="k", style="--")
        nb.labels(axes[0, 0], "iteration k", "E||theta_k - theta*||^2", "(a) T1: bcp targets, gamma = 1/calL")
        nb.labels(axes[0, 1], "iteration k", "E||theta_k - theta*||^2", "(b) T3: noisy targets, gamma = 1/(2 calL)")
        nb.labels(axes[0, 2], "iteration k", "measured / bound", "(c) looseness: measured / bound")
        c = result.records[0].predicted.info
        return finish(fig, f"F4: triangle, linear softmax student (pinned gauge, float64), online SGD, b = 1, "
                           f"R = {s['chains']} chains per run (own seed), init theta* + {s['init_scale']} N(0, I). "
                           f"calL = {c['calL']:.3g} (E12, 10^4 inputs); mu = {c['mu_local']:.3g}, L = {c['L_local']:.3g} "
                           f"on the ball of radius {s['radius']:g} around theta*. Bands +-2 SE across chains.")


def _curve_rows(rec, panel: str, teacher: str) -> list[dict]:
    """The measured curve, the bound and their ratio of one T-claim record."""
    p, m, cid = rec.predicted, rec.measured, rec.claim.id
    return (_rows(panel, teacher, "measured", m.k, m.curve, m.curve_se, cid)
            + _rows(panel, teacher, "bound", p.k, p.curve, p.curve_se, cid)
            + _rows("c", teacher, "measured / bound", m.k, m.curve / p.curve, m.curve_se / p.curve, cid))


def _stationary_rows(rec, teacher: str, cfg: dict) -> list[dict]:
    """The stationary value of the E17' record, its next-order prediction and the first-order tr S."""
    tr_s = recipes.theory(cfg).neighborhood_dist2
    last = int(cfg["steps"])
    out = [dict(panel="b", series=teacher, kind="E17' tr S", x=last, value=tr_s.value, se=tr_s.se, claim=rec.claim.id)]
    if rec.measured is not None:
        out += [dict(panel="b", series=teacher, kind="stationary measured", x=last, value=rec.measured.value,
                     se=rec.measured.se, claim=rec.claim.id),
                dict(panel="b", series=teacher, kind="E17' next order", x=last, value=rec.predicted.value,
                     se=rec.predicted.se, claim=rec.claim.id)]
    return out


def _notes(records: list) -> list[str]:
    out = []
    for r in records:
        if r.claim.kind in ("T1", "T3"):
            p, m, c = r.predicted, r.measured, r.claim.config
            out.append(f"{r.claim.kind} ({c['teacher']}, gamma = {c['gamma']:.3g}): {r.verdict.verdict}, measured / bound "
                       f"<= {np.max(m.curve[1:] / p.curve[1:]):.3g} over k >= 1; (1 - gamma mu)^k = {p.info['contraction']:.3g}; "
                       f"largest distance visited {m.info['max_distance_visited']:.3g} (ball {c['radius']:g}).")
        elif r.measured is not None:
            out.append(f"E17' ({r.claim.config['teacher']}): stationary E||theta - theta*||^2 = {r.measured.value:.4g} +- "
                       f"{r.measured.se:.2g} vs tr S (next order) {r.predicted.value:.4g}: {r.verdict.verdict}"
                       + (f" ({r.measured.reason})" if r.verdict.verdict == "not stationary" else "") + ".")
    return out
