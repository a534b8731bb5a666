"""F6, the neighborhood: stationary E[F - F*] vs gamma and vs teacher noise (DESIGN 2.7-2.8, E16, E17).

Triangle task, linear softmax student in the pinned gauge, float64, online, batch 1, no momentum.
Every point is its own claim with its own seed (`base.point_seed`), so the points of a curve have
independent errors and the E17 breakdown crossing has a valid SE: chains start at theta* and run
until the slowest mode has relaxed (`claims.recipes.auto_steps`); the stationary value is the
per-chain time average over the last half with the SE across chains and the evaluation-sample term
(`recipes.stationary`, DESIGN 2.9). Claims shown: E17 at the smallest gamma and at the noise levels,
the next-order prediction E17+ at every gamma, the breakdown crossing (E17-breakdown) and the T4
bound at the edge of its step-size range.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import claims
from ..claims import recipes
from ..plots import neighborhood as nb
from ..plots import finish, new_figure
from ..stats import crossing
from ..theory.bounds import theorem
from .base import FRAME_COLUMNS, Result, figure, point_seed

SEED = 6
TEACHERS = ("onehot", "dirichlet:1", "additive:0.02")
COLORS = {"onehot": "C0", "dirichlet:1": "C1", "additive:0.02": "C2"}
LEVEL = 1.1  # the breakdown: measured / E17 rises through 1.1
COLUMNS = [*FRAME_COLUMNS, "claim", "stationary", "steps"]


def _base(s: dict) -> dict:
    return {"task": "triangle", "student": "linear", "gauge": "pinned", "init": "optimum", "steps": "auto",
            "burn": s["burn"], "min_steps": s["min_steps"], "chains": s["chains"], "eval_n": s["eval_n"],
            "eval_every": s["eval_every"], "batch": 1, "momentum": 0.0}


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, claim: str = "",
         stationary: bool | None = None, steps: int | None = None) -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, claim=claim, stationary=stationary,
                steps=steps)


@figure("F6", title="Neighborhood", seed=SEED, claims=("E17", "E17+", "E17-breakdown", "T4"),
        summary="Stationary E[F - F*] vs gamma and vs noise: measured (independent seeds), E17, its next order, E16.")
class F6:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(gammas=(0.1, 0.8), level=LEVEL, noise_gamma=0.1, alphas=(1.0, 4.0), nus=(0.005, 0.02), chains=16, burn=3.0,
                        min_steps=400, eval_every=50, eval_n=1000, fine=12, bound_steps=1000, bound_chains=8,
                        breakdown=("onehot",))
        return dict(gammas=(0.025, 0.05, 0.1, 0.2, 0.4, 0.8), noise_gamma=0.05, alphas=(0.3, 1.0, 3.0, 10.0),
                    nus=(0.005, 0.02, 0.08), chains=80, burn=4.0, min_steps=1000, eval_every=100, eval_n=5000, fine=48, level=LEVEL,
                    bound_steps=8000, bound_chains=32, breakdown=TEACHERS)

    @staticmethod
    def measure(s: dict) -> Result:
        base, rows, records, notes = _base(s), [], [], []
        seeds = iter(range(10_000))

        def point(teacher: str, gamma: float, kind: str, panel: str, x: float) -> None:
            cfg = {**base, "teacher": teacher, "gamma": gamma, "seed": point_seed(SEED, next(seeds))}
            rec = claims.make(kind, f"{kind}-{panel}-{teacher}-g{gamma:g}", **cfg).check()
            records.append(rec)
            m = rec.measured
            rows.append(_row(panel, teacher, "measured", x, m.value, m.se, rec.claim.id, m.stationary, m.info["steps"]))
            e17 = recipes.theory(cfg).neighborhood_excess_risk
            rows.append(_row(panel, teacher, "E17", x, e17.value, e17.se, rec.claim.id))
            if kind != "E17":
                rows.append(_row(panel, teacher, kind, x, rec.predicted.value, rec.predicted.se, rec.claim.id))

        for teacher in TEACHERS:
            first = len(records)
            for i, g in enumerate(s["gammas"]):
                point(teacher, g, "E17" if i == 0 else "E17+", "gamma", g)
            rows += _curves(base, teacher, s)
            if teacher in s["breakdown"]:
                records.append(claims.make("E17-breakdown", f"E17-breakdown-{teacher}", **base, teacher=teacher,
                                           bracket=(min(s["gammas"]) / 4, max(s["gammas"])), level=s["level"],
                                           seed=point_seed(SEED, next(seeds))).check())
            notes.append(_crossing_note(teacher, records[first:first + len(s["gammas"])], s["level"]))
        records.append(_t4(base, s, rows, point_seed(SEED, next(seeds))))
        for name, levels in (("additive", s["nus"]), ("dirichlet", s["alphas"])):
            for v in levels:
                point(f"{name}:{v:g}", s["noise_gamma"], "E17", name, v)
        return Result(pd.DataFrame(rows, columns=COLUMNS), records, notes=notes + _notes(records))

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(2, 2)
        f = result.frame
        sel = lambda **kw: f[np.logical_and.reduce([f[k] == v for k, v in kw.items()])]  # noqa: E731
        ax = axes[0, 0]
        for i, t in enumerate(TEACHERS):
            m = sel(panel="gamma", series=t, kind="measured")
            nb.measured_points(ax, m.x, m.value, m.se, label=f"{t} measured", color=COLORS[t])
            e = sel(panel="curve", series=t, kind="E17")
            nb.prediction(ax, e.x, e.value, label="E17 gamma sigma^2/4 (dashed)" if i == 0 else "_nolegend_", color=COLORS[t])
            c = sel(panel="curve", series=t, kind="E17+")
            nb.prediction(ax, c.x, c.value, label="next order (dotted)" if i == 0 else "_nolegend_", color=COLORS[t], style=":")
        b = sel(panel="T4", kind="E16 (T4)")
        nb.bound_segment(ax, b.x, b.value, float(b.x.max()), label="E16 bound (T4 range only)", color="C3")
        bm = sel(panel="T4", kind="measured max_k")
        nb.measured_points(ax, bm.x, bm.value, bm.se, label="onehot max_k E[F_k-F*] (T4 range)", color="C3", marker="s")
        nb.loglog(ax, "step size gamma", "stationary E[F - F*] (nats)", "(a) neighborhood vs gamma", fontsize=5.5)
        _ratio_panel(axes[0, 1], f, sel, s["level"])
        for ax, name, xlabel in ((axes[1, 0], "additive", "noise variance nu"), (axes[1, 1], "dirichlet", "Dirichlet alpha")):
            m, e = sel(panel=name, kind="measured"), sel(panel=name, kind="E17")
            nb.measured_points(ax, m.x, m.value, m.se, label=f"{name} measured", color="C2" if name == "additive" else "C1")
            nb.prediction(ax, e.x, e.value, label="E17 (E7)" if name == "additive" else "E17 (E8)", color="k")
            nb.loglog(ax, xlabel, "stationary E[F - F*] (nats)", f"({'c' if name == 'additive' else 'd'}) {name} noise, "
                      f"gamma={s['noise_gamma']:g}")
        return finish(fig, f"F6: triangle task, linear softmax student (pinned gauge), float64, online, batch 1; "
                           f"{s['chains']} chains from theta* per point, each point with its own seed; steps: slowest mode "
                           f"relaxed by e^-{s['burn']:g} before the averaging window (last half). Bars +-2 SE (chains + "
                           f"evaluation sample of {s['eval_n']}). E16 only where T4 admits gamma.")


def _curves(base: dict, teacher: str, s: dict) -> list[dict]:
    """E17 and its next order on a fine gamma grid (theory only)."""
    rows = []
    for g in np.geomspace(min(s["gammas"]), max(s["gammas"]), s["fine"]):
        p = recipes.theory({**base, "teacher": teacher, "gamma": float(g), "seed": SEED})
        e17, nxt = p.neighborhood_excess_risk.value, p.values.get("neighborhood_excess_risk_corrected")
        rows.append(_row("curve", teacher, "E17", g, e17))
        rows.append(_row("curve", teacher, "E17+", g, math.nan if nxt is None else nxt.value))
        rows.append(_row("ratio", teacher, "E17+ / E17", g, math.nan if nxt is None else nxt.value / e17))
    return rows


def _t4(base: dict, s: dict, rows: list[dict], seed: int):
    """T4 at the largest step size it admits (local constants), from theta*: its bound E16 is the
    neighborhood L gamma sigma^2 / mu at every k."""
    cfg = {**base, "teacher": "onehot", "theorem": "T4", "radius": 1.5, "seed": seed, "steps": s["bound_steps"],
           "chains": s["bound_chains"], "eval_every": max(1, s["bound_steps"] // 20), "init_scale": 0.0}
    c, _ = recipes.bound_constants({**cfg, "gamma": 1.0})
    edge = theorem("T4").admissible(c)
    rec = claims.make("T4", "T4-edge-onehot", **cfg, gamma=edge).check()
    for g in np.geomspace(edge / 2, edge, 6):
        rows.append(_row("T4", "onehot", "E16 (T4)", g, theorem("T4").neighborhood(g, c), claim=rec.claim.id))
    m = rec.measured
    i = int(np.nanargmax(m.curve))
    rows.append(_row("T4", "onehot", "measured max_k", edge, float(m.curve[i]), float(m.curve_se[i]), rec.claim.id))
    return rec


def _ratio_panel(ax, f: pd.DataFrame, sel, level: float) -> None:
    for i, t in enumerate(TEACHERS):
        m, e = sel(panel="gamma", series=t, kind="measured"), sel(panel="gamma", series=t, kind="E17")
        e17 = e.value.to_numpy()
        nb.ratio_panel(ax, m.x, m.value.to_numpy() / e17, m.se.to_numpy() / e17, label=t, color=COLORS[t],
                       tolerance=level - 1)
        r = sel(panel="ratio", series=t)
        nb.prediction(ax, r.x, r.value, label="next order / E17" if i == 0 else "_nolegend_", color=COLORS[t], style=":")
    ax.set_xscale("log")
    nb.labels(ax, "step size gamma", "measured / E17", f"(b) measured / E17 (band: breakdown level {level:g})", fontsize=6)


def _crossing_note(teacher: str, points: list, level: float) -> str:
    """Where measured / E17 rises through `level` between the gamma points (independent seeds, so
    the delta-method SE of `stats.crossing` holds), beside the next-order prediction's crossing."""
    g = [r.claim.config["gamma"] for r in points]
    e17 = [recipes.theory(r.claim.config).neighborhood_excess_risk.value for r in points]
    ratio = [r.measured.value / e for r, e in zip(points, e17)]
    se = [r.measured.se / e for r, e in zip(points, e17)]
    x, x_se = crossing(g, ratio, se, level)
    where = f"at gamma = {x:.3g} +- {x_se:.2g}" if math.isfinite(x) else f"nowhere on [{min(g):g}, {max(g):g}]"
    return f"{teacher}: measured / E17 rises through {level:g} {where} (linear in log gamma between grid points)."


def _notes(records: list) -> list[str]:
    out = []
    for r in records:
        if r.claim.kind == "E17-breakdown" and r.measured is not None:
            out.append(f"{r.claim.config['teacher']}: the next order puts E17's {r.claim.config['level']:g}x breakdown at "
                       f"gamma = {r.predicted.info['gamma']:.3g}; measured / E17 there = {r.measured.value:.3f} +- "
                       f"{r.measured.se:.3f} ({r.verdict.verdict}).")
    return out
