"""F5, T2 and T4: E[F(theta_k) - F*] vs k on the teacher-network task with a realizable MLP student.

`TeacherNetworkTask` ("teacher-net": d = 5, K = 3, one hidden layer of 16 tanh units) and the MLP
student of the same architecture (`mlp:16:tanh`, 147 parameters, 17 gauge directions), float64, so
theta* = the generating weights (Prop. 2 applies). Online SGD, batch 1, chains from
theta* + 0.3 N(0, I); every run has its own seed (`base.point_seed`). Every verdict is a claim record:
- `P2-SGD` (practical gamma, bcp): F - F* keeps falling, its tail slope of log(F - F*) negative
  beyond 4 SE (DESIGN 2.9; Prop. 2: no neighborhood).
- `E17` (practical gamma, onehot and Dirichlet(1); full mode): the stationary E[F - F*] against
  gamma sigma^2 / 4, measured by `recipes.stationary` with its per-quantity stationarity. H at theta*
  has kappa ~ 1e6, so the slowest modes cannot relax in an affordable run: the record then reads
  "not stationary" (with the unrelaxed share), never "disagrees".
- `T2` (bcp) and `T4` (onehot) at an admissible gamma (full mode: the largest, mu / (L calL) and
  mu / (2 L calL); quick mode: T4 only, at a fixed admissible gamma checked by the theorem, since
  each theory of the MLP student costs ~15 s of Monte Carlo over Jacobians): the library kinds,
  so `recipes.bound_curve` says `vacuous` when (1 - gamma mu)^k decays by < 1 % over the run while
  its transient dominates. The constants are taken at theta* (ball of radius 0): the Hessian has
  negative eigenvalues on every ball of radius >= 0.1 around theta* (`mu-local`, full mode), so no
  positive local constant exists there; lambda_min(H*) bounds the PL constant of any neighborhood
  from above and L, calL at theta* are lower estimates, so the admissible gamma and the contraction
  are if anything optimistic: a bound vacuous with them is vacuous with any valid constants. The
  start e0 = F(theta_0) - F* exceeds T4's neighborhood sigma^2 / (2 calL) at this init, so the
  bound's transient is what is tested.
Panels: (a) bcp: practical run and the T2 run with E14; (b) noisy targets with E17 and the T4 run
with E16; (c) the spectrum of H at theta* against the decay 1 / (2 gamma k) reached by each run.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import claims
from ..claims import recipes
from ..plots import finish, new_figure
from ..plots import neighborhood as nb
from ..plots import theorems as tp
from ..theory.bounds import theorem
from .base import FRAME_COLUMNS, Result, figure, point_seed

SEED = 5
GAMMA = 0.02
COLORS = {"bcp": "C1", "onehot": "C0", "dirichlet:1": "C2"}
COLUMNS = [*FRAME_COLUMNS, "claim"]


def _base(s: dict) -> dict:
    return {"task": "teacher-net", "student": "mlp:16:tanh", "gauge": "pinned", "init": "perturbed",
            "init_scale": s["init_scale"], "batch": 1, "momentum": 0.0, "eval_n": s["eval_n"], "burn": 3.0}


def _rows(panel: str, series: str, kind: str, k, values, se, claim: str = "") -> list[dict]:
    return [dict(panel=panel, series=series, kind=kind, x=float(x), value=float(v), se=float(e), claim=claim)
            for x, v, e in zip(k, values, se)]


@figure("F5", title="Function value (T2, T4)", seed=SEED, claims=("P2-SGD", "E17", "T2", "T4", "mu-local"),
        summary="E[F - F*] vs k on teacher-net, MLP student: bcp converges, noisy targets plateau, T2/T4 vacuous (kappa ~1e6).")
class F5:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(steps=400, chains=16, eval_every=20, eval_n=2000, init_scale=0.3, noisy=("onehot",), e17=(),
                        theorems=("T4",), bound_steps=400, bound_chains=16, bound_gamma={"T4": 1e-8}, mu_local=False)
        return dict(steps=8000, chains=64, eval_every=200, eval_n=8000, init_scale=0.3, noisy=("onehot", "dirichlet:1"),
                    e17=("onehot", "dirichlet:1"), theorems=("T2", "T4"), bound_steps=8000, bound_chains=32, bound_gamma={},
                    mu_local=True)

    @staticmethod
    def measure(s: dict) -> Result:
        rows, records, seeds = [], [], iter(range(10_000))
        run = {**_base(s), "gamma": GAMMA, "steps": s["steps"], "chains": s["chains"], "eval_every": s["eval_every"]}
        configs = [{**run, "teacher": t, "seed": point_seed(SEED, next(seeds))} for t in ("bcp", *s["noisy"])]
        recipes.prefetch(configs)  # made together, stacked (`recipes.prefetch`)
        for cfg in configs:
            teacher = cfg["teacher"]
            m = recipes.measured_curve(cfg, "excess_risk")
            cid = ""
            if teacher == "bcp":
                records.append(claims.make("P2-SGD", "P2-SGD-bcp", **cfg).check())
                cid = records[-1].claim.id
            elif teacher in s["e17"]:
                records.append(claims.make("E17", f"E17-{teacher}", **cfg).check())
                cid = records[-1].claim.id
                p = records[-1].predicted
                rows += _rows("b", teacher, "E17", [s["steps"]], [p.value], [p.se], cid)
            rows += _rows("a" if teacher == "bcp" else "b", teacher, "measured", m.k, m.curve, m.curve_se, cid)
            rows += _spectrum(cfg, teacher)
        for th, teacher in (pair for pair in (("T2", "bcp"), ("T4", "onehot")) if pair[0] in s["theorems"]):
            records.append(_bound(th, teacher, s, point_seed(SEED, next(seeds))))
            rows += _bound_rows(records[-1], "a" if th == "T2" else "b", teacher)
        if s["mu_local"]:  # on the T2 claim's seed and gamma, so it reads that claim's theory
            bound = [r for r in records if r.claim.kind in ("T2", "T4") and r.measured is not None]
            t2 = next(r.claim.config for r in bound if r.claim.kind == "T2")
            far = max(r.measured.info["max_distance_visited"] for r in bound)
            records.append(claims.make("mu-local", "mu-local-visited-ball", **_base(s), teacher="bcp", seed=t2["seed"],
                                       gamma=t2["gamma"], radius=float(far)).check())
        return Result(pd.DataFrame(rows, columns=COLUMNS), records, notes=_notes(records))

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(3)
        f = result.frame
        for panel, ax in (("a", axes[0, 0]), ("b", axes[0, 1])):
            sub = f[f.panel == panel]
            for t in dict.fromkeys(sub.series):
                m = sub[(sub.series == t) & (sub.kind == "measured")]
                tp.curve_with_band(ax, m.x, m.value, m.se, label=f"{t}, gamma = {GAMMA:g}", color=COLORS[t], log=True)
                e = sub[(sub.series == t) & (sub.kind == "E17")]
                if len(e):
                    tp.level(ax, float(e.value.iloc[0]), float(e.se.iloc[0]), label=f"E17 gamma sigma^2/4, {t}",
                             color=COLORS[t])
            for rec in (r for r in result.records if r.claim.kind == ("T2" if panel == "a" else "T4")):
                b = sub[(sub.claim == rec.claim.id) & (sub.kind == "measured admissible")]
                g = rec.claim.config["gamma"]
                tp.curve_with_band(ax, b.x, b.value, b.se, color="0.35", log=True,
                                   label=f"{rec.claim.config['teacher']}, gamma = {g:.2g} (admissible)")
                bd = sub[(sub.claim == rec.claim.id) & (sub.kind == "bound")]
                tp.prediction_line(ax, bd.x, bd.value, label=f"{theorem(rec.claim.kind).tag} bound ({rec.verdict.verdict})",
                                   color="k")
        t2 = " and T2" if any(r.claim.kind == "T2" for r in result.records) else ""
        nb.labels(axes[0, 0], "iteration k", "E[F(theta_k) - F*] (nats)", f"(a) bcp: interpolation{t2}")
        nb.labels(axes[0, 1], "iteration k", "E[F(theta_k) - F*] (nats)", "(b) noisy targets: E17 and T4")
        _spectrum_panel(axes[0, 2], f)
        t4 = next(r for r in result.records if r.claim.kind == "T4").predicted.info
        return finish(fig, f"F5: teacher-net (d=5, K=3, 16 tanh), realizable MLP student mlp:16:tanh, float64, online "
                           f"SGD, b = 1, init theta* + {s['init_scale']} N(0, I); R = {s['chains']} chains "
                           f"({s['bound_chains']} at admissible gamma), own seed per run. Constants at theta*: kappa = "
                           f"{t4['kappa_local']:.2g}, calL = {t4['calL']:.3g} (empirical). F - F* on {s['eval_n']:,} "
                           f"evaluation points; bands +-2 SE (chains + evaluation sample).")


def _bound(th: str, teacher: str, s: dict, seed: int):
    """The T2/T4 claim at the largest admissible gamma (constants at theta*), or at the settings' gamma."""
    cfg = {**_base(s), "teacher": teacher, "theorem": th, "radius": 0.0, "seed": seed, "steps": s["bound_steps"],
           "chains": s["bound_chains"], "eval_every": max(1, s["bound_steps"] // 20)}
    gamma = s["bound_gamma"].get(th)
    if gamma is None:
        c, _ = recipes.bound_constants({**cfg, "gamma": GAMMA})
        gamma = theorem(th).admissible(c)
    return claims.make(th, f"{th}-{teacher}-admissible", **cfg, gamma=float(gamma)).check()


def _bound_rows(rec, panel: str, teacher: str) -> list[dict]:
    if rec.measured is None:
        return []
    p, m, cid = rec.predicted, rec.measured, rec.claim.id
    return (_rows(panel, teacher, "measured admissible", m.k, m.curve, m.curve_se, cid)
            + _rows(panel, teacher, "bound", p.k, p.curve, p.curve_se, cid))


def _spectrum(cfg: dict, teacher: str) -> list[dict]:
    """Eigenvalues of H at theta* on its range (the run record's relaxation data) and the level
    1 / (2 gamma k_half) below which a mode has not relaxed by the start of the averaging window."""
    r = recipes.run(cfg)
    if r.relaxation is None:
        return []
    ev = np.sort(np.asarray(r.relaxation["eigenvalues"]))
    half = float(r.relaxation["decay"].get(int(cfg["steps"]) // 2, math.nan))
    out = _rows("c", teacher, "eigenvalue", np.arange(1, len(ev) + 1), ev, np.zeros(len(ev)))
    return out + _rows("c", teacher, "unrelaxed below", [len(ev)], [1.0 / (2.0 * half)], [0.0])


def _spectrum_panel(ax, f: pd.DataFrame) -> None:
    c = f[f.panel == "c"]
    t = c.series.iloc[0]
    ev = c[(c.series == t) & (c.kind == "eigenvalue")]
    ax.plot(ev.x, ev.value, "o", ms=2.5, color="0.3", label="eigenvalues of H at theta* (range)")
    lvl = c[(c.series == t) & (c.kind == "unrelaxed below")]
    tp.level(ax, float(lvl.value.iloc[0]), label="1 / (2 gamma k/2): not relaxed below", color="C3", style="--")
    ax.set_yscale("log")
    nb.labels(ax, "mode (sorted)", "eigenvalue (nat / param^2)", "(c) curvature at theta*: kappa ~ 1e6")


def _notes(records: list) -> list[str]:
    out = []
    for r in records:
        v, c, p, m = r.verdict.verdict, r.claim.config, r.predicted, r.measured
        if m is None:
            out.append(f"{r.claim.id}: {v} ({r.verdict.detail}).")
        elif r.claim.kind in ("T2", "T4"):
            out.append(f"{r.claim.kind} ({c['teacher']}) at gamma = {c['gamma']:.2g} (largest admissible "
                       f"{p.info['gamma_max']:.2g}): {v}; (1 - gamma mu)^k = {p.info['contraction']:.12f}.")
        elif r.claim.kind == "E17":
            why = f" ({m.reason})" if v == "not stationary" else ""
            out.append(f"E17 ({c['teacher']}, gamma = {GAMMA:g}): measured {m.value:.4g} +- {m.se:.2g} vs gamma sigma^2/4 = "
                       f"{p.value:.4g}: {v}{why}.")
        elif r.claim.kind == "P2-SGD":
            out.append(f"bcp at gamma = {GAMMA:g}: tail slope of log(F - F*) = {m.value:.3g} +- {m.se:.2g} per step ({v}); "
                       f"median F_k / F_0 = {m.info['median_final_over_initial']:.3g} at the last k.")
        elif r.claim.kind == "mu-local":
            out.append(f"lambda_min of the Hessian over the ball of radius {c['radius']:.3g} that the runs visit: {m.value:.3g}, "
                       f"vs lambda_min(H*) = {p.value:.3g} on its range (finding).")
    return out
