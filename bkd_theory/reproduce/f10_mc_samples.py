"""F10, Monte Carlo teachers: student noise vs the number S of teacher samples (DESIGN 2.2, 2.5, 2.8;
E9, E17).

A Bayesian teacher's Monte Carlo predictive is modelled by `mc(S, base)`: the mean of S independent
draws of a stochastic teacher. Its covariance is Cov_base / S, so sigma^2 = sigma_base^2 / S (E9);
the stationary neighborhood (E17 and its next order, which also scales as 1/S because the targets
sum to 1) shrinks as 1/S too.

Triangle task, linear softmax student in the pinned gauge, float64; bases onehot and dirichlet(1).
Every S is its own point with its own seed (`base.point_seed`).
- (a) gradient noise at theta*: library kind "P3" (sigma^2 of per-sample gradients with sampled
  targets, batch means, vs the closed form E6/E8 with E9).
- (b) stationary E[F - F*] of online SGD (batch 1, from theta*, run until the slowest mode has
  relaxed, last-half average; SE across chains with the evaluation-sample term,
  `claims.recipes.stationary`): library kind "E17+" (next-order E17 with sigma_mc^2), and the
  log-log slope in S (`E9-slope`, independent points) against the slope of the prediction.
"""
from __future__ import annotations

import math

import pandas as pd

from .. import claims
from ..claims import recipes, thresholds
from ..plots import finish, new_figure
from ..plots import neighborhood as nb
from ..threads import single_thread
from .base import FRAME_COLUMNS, Result, figure, point_seed

SEED = 10
BASES = ("onehot", "dirichlet:1")
COLORS = {"onehot": "C0", "dirichlet:1": "C1"}
COLUMNS = [*FRAME_COLUMNS, "claim", "stationary", "steps"]
KINDS = ("P3", "E17+", "E9-slope")


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, claim: str = "",
         stationary: bool | None = None, steps: int | None = None) -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, claim=claim, stationary=stationary,
                steps=steps)


@figure("F10", title="Monte Carlo teachers", seed=SEED, claims=KINDS,
        summary="sigma^2 at theta* and the stationary neighborhood vs the number S of teacher samples: E9 (1/S) "
                "with E17's next order, independent seeds per S.")
class F10:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(S=(1, 4, 16), gamma=0.1, chains=16, burn=3.0, min_steps=400, eval_every=50, eval_n=1000,
                        n_sigma=8192)
        return dict(S=(1, 2, 4, 8, 16, 32), gamma=0.05, chains=64, burn=4.0, min_steps=1000, eval_every=100,
                    eval_n=5000, n_sigma=131_072)

    @staticmethod
    def measure(s: dict) -> Result:
        with single_thread():
            return _measure(s)

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(2, height=4.0)
        f = result.frame
        titles = {"sigma2": ("sigma^2 at theta* (grad^2 per sample)", "(a) gradient noise vs S (E9)"),
                  "neighborhood": ("stationary E[F - F*] (nats)",
                                   f"(b) neighborhood vs S (E17 next order), gamma={s['gamma']:g}")}
        for ax, panel in zip(axes[0], ("sigma2", "neighborhood")):
            for i, base in enumerate(BASES):
                sub = f[(f.panel == panel) & (f.series == base)]
                m = sub[sub.kind == "measured"]
                nb.measured_points(ax, m.x, m.value, m.se, label=f"mc(S, {base}) measured", color=COLORS[base])
                for kind, style in (("E9", "--"), ("E17", "--"), ("E17 next order", ":")):
                    k = sub[sub.kind == kind]
                    if len(k):
                        nb.prediction(ax, k.x, k.value, label=kind if i == 0 else "_nolegend_", color=COLORS[base],
                                      style=style)
            nb.loglog(ax, "teacher samples S", *titles[panel])
        return finish(fig, f"F10: triangle, linear student (pinned), float64; each S its own seed. (a) {s['n_sigma']:,} "
                           f"fresh (x, t) per S. (b) online SGD, b=1, {s['chains']} chains from theta*, relaxed by "
                           f"e^-{s['burn']:g}, last-half mean; SE: chains + eval sample ({s['eval_n']}). Bars +-2 SE.")


def _measure(s: dict) -> Result:
    """The claims and the frame of `F10.measure`."""
    rows: list[dict] = []
    records = []
    seeds = iter(point_seed(SEED, i) for i in range(10_000))
    # every key the E17+ defaults carry is set here, so its claims and E9-slope read the same memoised runs
    run = {"task": "triangle", "student": "linear", "gauge": "pinned", "init": "optimum", "init_scale": 0.0, "steps": "auto",
           "burn": s["burn"], "min_steps": s["min_steps"], "chains": s["chains"], "eval_n": s["eval_n"],
           "eval_every": s["eval_every"], "batch": 1, "momentum": 0.0, "gamma": s["gamma"]}
    for base in BASES:
        for S in s["S"]:
            teacher = f"mc:{S}:{base}"
            rec = claims.make("P3", f"P3-{teacher}", task="triangle", student="linear", gauge="pinned", teacher=teacher,
                              n=s["n_sigma"], route="sigma2_closed_form", seed=next(seeds)).check()
            records.append(rec)
            rows += _pair("sigma2", base, S, rec, "E9")
        slope = {**run, "base": base, "teacher": f"mc:S:{base}", "samples": list(s["S"]),
                 "seeds": [next(seeds) for _ in s["S"]]}
        points = thresholds.mc_points(slope)
        recipes.prefetch(points)  # made together, stacked where their steps agree (`recipes.prefetch`)
        for c, S in zip(points, s["S"]):
            rec = claims.make("E17+", f"E17+-{c['teacher']}-g{s['gamma']:g}", **c).check()
            records.append(rec)
            rows += _pair("neighborhood", base, S, rec, "E17 next order")
            e17 = recipes.prediction(c, "neighborhood_excess_risk")
            rows.append(_row("neighborhood", base, "E17", S, e17.value, e17.se, rec.claim.id))
        records.append(claims.make("E9-slope", f"E9-slope-{base}-g{s['gamma']:g}", **slope).check())
    return Result(pd.DataFrame(rows, columns=COLUMNS), records, notes=_notes(records))


def _pair(panel: str, base: str, S: int, rec, kind: str) -> list[dict]:
    """The measured and predicted rows of one claim record."""
    if rec.measured is None:
        return []
    m, p = rec.measured, rec.predicted
    return [_row(panel, base, "measured", S, m.value, m.se, rec.claim.id, m.stationary, m.info.get("steps")),
            _row(panel, base, kind, S, p.value, p.se, rec.claim.id)]


def _notes(records: list) -> list[str]:
    out = []
    for r in records:
        if r.claim.kind == "E9-slope" and r.measured is not None:
            out.append(f"mc(S, {r.claim.config['base']}): the stationary neighborhood falls as S^{r.measured.value:.3f} "
                       f"+- {r.measured.se:.2g} (predicted {r.predicted.value:.3f}, {r.verdict.verdict}).")
    v = [r.verdict.verdict for r in records if r.claim.kind in ("P3", "E17+")]
    out.append(f"P3 and E17+ per S: {v.count('agrees')}/{len(v)} agree.")
    return out
