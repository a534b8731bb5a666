"""The claim kinds of DESIGN 2.3-2.8, each registered once with its recipes, rule and defaults.

    P1   onehot and bcp targets give the same risk F(theta) (E2)           Equal (prediction 0)
    P2   bcp per-sample gradients vanish at theta* (E3)                    Zero (rounding)
    P3   sigma^2 at theta* equals its closed form (E4, E6-E11)             Equal
    T1-T4  the bound curves E13-E16 over an SGD run                        Bound (or vacuous)
    E17  stationary E[F - F*] = gamma sigma^2 / (4b)                       Equal
    E17+ its next-order correction (DESIGN 7)                              Equal
    E17' stationary E||theta - theta*||^2 = tr S                           Equal
    E17-breakdown  measured / E17 where the next order says it reaches a level   Equal
    E18  finite-n excess risk tr(H^-1 C) / (2n)                            Equal
    E19  the bcp step-size threshold = the sign change of the top Lyapunov exponent   Equal

The defaults are on the well-conditioned `triangle` task with the linear pinned-gauge student in
float64 (T2/T4 too: on `teacher-net` with an MLP kappa is ~1e6 and those bounds cannot bind in an
affordable run, F5 shows that as `vacuous`). Stationary runs size themselves from mu
(`recipes.auto_steps`). Figures make their own instances of these kinds (`base.make`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from .. import rng as rng_mod
from ..stats import mean_se
from ..theory.bounds import THEOREMS
from ..verdicts import Bound, Equal, Outcome, Zero
from . import recipes
from .base import register_claim

TRIANGLE = {"task": "triangle", "student": "linear", "gauge": "pinned", "seed": 0}
RUN = {**TRIANGLE, "init": "perturbed", "eval_n": 2000, "eval_every": 50, "chains": 64, "batch": 1, "momentum": 0.0}


# ------------------------------------------------------------------ P1, P2, P3
def _zero(cfg: Mapping[str, Any]) -> Outcome:
    return Outcome(0.0, 0.0, info={"method": "exact (Prop. 1 / Prop. 2)"})


def _p1(cfg: Mapping[str, Any]) -> Outcome:
    """F_onehot(theta) - F_bcp(theta) at random theta = theta* + scale N(0, I), paired on the same (x, y)."""
    from ..losses import cross_entropy

    task, student, _ = recipes.objects(cfg)
    rng = rng_mod.stream(int(cfg["seed"]), "claims", 2)
    R, n, K = int(cfg["thetas"]), int(cfg["n"]), task.num_classes
    theta = student.optimum(task)[None] + float(cfg["theta_scale"]) * torch.from_numpy(rng.standard_normal((R, student.num_params)))
    x, y = task.sample(R * n, rng)
    log_q = student.log_probs(theta, torch.from_numpy(x).reshape(R, n, -1))
    onehot = torch.from_numpy(np.eye(K)[y].reshape(R, n, K))
    bcp = torch.from_numpy(task.bcp(x)).reshape(R, n, K)
    diff = (cross_entropy(onehot, log_q) - cross_entropy(bcp, log_q)).numpy().ravel()
    m, se, _ = mean_se(diff)
    return Outcome(m, se, info={"thetas": R, "pairs": diff.size})


def _p2(cfg: Mapping[str, Any]) -> Outcome:
    """max_i ||grad l(theta*; x_i, p(x_i))|| over n per-sample gradients (float64)."""
    task, student, teacher = recipes.objects(cfg)
    x, y = task.sample(int(cfg["n"]), rng_mod.stream(int(cfg["seed"]), "claims", 3))
    t = teacher.sample(task.bcp(x), y, rng_mod.stream(int(cfg["seed"]), "claims", 3, 1), x=x)
    g = student.per_sample_grads(student.optimum(task)[None], torch.from_numpy(x)[None], torch.from_numpy(t)[None])[0]
    norms = g.norm(dim=-1).numpy()
    return Outcome(float(norms.max()), 0.0, info={"rms_grad_norm": float(np.sqrt(np.mean(norms**2))), "n": len(norms)})


def _p3_predict(cfg: Mapping[str, Any]) -> Outcome:
    return recipes.prediction(cfg, cfg.get("route", "sigma2_closed_form"))


def _p3_measure(cfg: Mapping[str, Any]) -> Outcome:
    """E||grad l(theta*; x, t)||^2 from n per-sample gradients with sampled targets (batch means)."""
    from ..instruments import sigma2_at_optimum

    task, student, teacher = recipes.objects(cfg)
    e = sigma2_at_optimum(student, task, teacher, int(cfg["n"]), rng_mod.stream(int(cfg["seed"]), "claims", 4))
    return Outcome(e.value, e.se, info={"method": e.method})


register_claim(
    "P1", tags=("E2",), statement="onehot and bcp targets give the same risk F(theta) at random theta (Prop. 1)",
    rule=Equal(), predict=_zero, measure=_p1, quick=("P1",),
    defaults={"P1": {**TRIANGLE, "teacher": "onehot", "thetas": 8, "theta_scale": 1.0, "n": 65536}})
register_claim(
    "P2", tags=("Prop. 2", "E3"), statement="bcp targets: every per-sample gradient vanishes at theta* (Prop. 2)",
    rule=Zero(1e-12), predict=_zero, measure=_p2, quick=("P2",), defaults={"P2": {**TRIANGLE, "teacher": "bcp", "n": 10000}})
_P3 = {"n": 32768}
register_claim(
    "P3", tags=("E4", "E6-E11"), statement="sigma^2 of {teacher} targets at theta* equals its closed form (Prop. 3)",
    rule=Equal(), predict=_p3_predict, measure=_p3_measure, quick=("P3-onehot", "P3-dirichlet", "P3-additive"),
    defaults={"P3-onehot": {**TRIANGLE, **_P3, "teacher": "onehot"},
              "P3-dirichlet": {**TRIANGLE, **_P3, "teacher": "dirichlet:5"},
              "P3-additive": {**TRIANGLE, **_P3, "teacher": "additive:0.01"}})


# ------------------------------------------------------------------ T1-T4
def _measure_bound(cfg: Mapping[str, Any]) -> Outcome:
    return recipes.measured_curve(cfg, THEOREMS[cfg["theorem"]].quantity)


_BOUND = {**RUN, "init_scale": 0.3, "radius": 1.5, "chains": 64, "steps": 3000, "eval_every": 100}
for _th, _teacher, _gamma, _over in (("T1", "bcp", 0.05, {}), ("T2", "bcp", 0.001, {}), ("T3", "onehot", 0.025, {}),
                                     ("T4", "onehot", 0.0005, {"steps": 6000, "eval_every": 200})):
    _t = THEOREMS[_th]
    register_claim(
        _th, tags=(_t.tag,), statement="{teacher} SGD at gamma={gamma}: " + _t.statement + " at every recorded k",
        rule=Bound(), predict=recipes.bound_curve, measure=_measure_bound,
        defaults={_th: {**_BOUND, "teacher": _teacher, "gamma": _gamma, "theorem": _th, **_over}})


# ------------------------------------------------------------------ E17, E17', E17+
def _stationary_kind(name: str, quantity: str, predicted: str, tag: str, statement: str,
                     defaults: Mapping[str, Mapping[str, Any]]) -> None:
    register_claim(name, tags=(tag,), statement=statement, rule=Equal(),
                   predict=lambda cfg: recipes.prediction(cfg, predicted),
                   measure=lambda cfg: recipes.stationary(cfg, quantity), defaults=defaults)


# init_scale sqrt(gamma/2): for onehot C = H, so the E17' law is S = gamma I / 2 (start near stationarity)
_E17 = {**RUN, "teacher": "onehot", "init_scale": 0.1, "steps": "auto", "burn": 3.0, "eval_n": 4000}
_stationary_kind("E17", "excess_risk", "neighborhood_excess_risk", "E17",
                 "{teacher} SGD at gamma={gamma}: stationary E[F - F*] = gamma sigma^2 / (4b)",
                 {"E17": {**_E17, "gamma": 0.02, "init_scale": 0.1}})
_stationary_kind("E17+", "excess_risk", "neighborhood_excess_risk_corrected", "E17 next order",
                 "{teacher} SGD at gamma={gamma}: stationary E[F - F*] = its next-order prediction",
                 {"E17+": {**_E17, "gamma": 0.1, "init_scale": 0.22}})
_stationary_kind("E17'", "dist2", "neighborhood_dist2_corrected", "E17'",
                 "{teacher} SGD at gamma={gamma}: stationary E||theta - theta*||^2 = tr S (next order)",
                 {"E17'": {**_E17, "gamma": 0.1, "init_scale": 0.22}})


def _next_order_ratio(cfg: Mapping[str, Any], gamma: float) -> float:
    """The next-order prediction / E17 at gamma (inf beyond the mean-square threshold)."""
    p = recipes.theory({**cfg, "gamma": float(gamma)})
    nxt = p.values.get("neighborhood_excess_risk_corrected")
    return math.inf if nxt is None else nxt.value / p.neighborhood_excess_risk.value


def breakdown_gamma(cfg: Mapping[str, Any]) -> float:
    """The gamma in `cfg["bracket"]` where the next-order prediction exceeds E17 by `level` (brentq)."""
    from scipy.optimize import brentq

    lo, hi = (float(g) for g in cfg["bracket"])
    f = lambda g: min(_next_order_ratio(cfg, g), 1e6) - float(cfg["level"])  # noqa: E731
    if not f(lo) < 0 < f(hi):
        raise ValueError(f"bracket: the next-order ratio does not cross {cfg['level']:g} on [{lo:g}, {hi:g}]")
    return float(brentq(f, lo, hi, xtol=1e-6 * lo))


def _breakdown_predict(cfg: Mapping[str, Any]) -> Outcome:
    return Outcome(float(cfg["level"]), 0.0, info={"gamma": breakdown_gamma(cfg), "method": "next order (DESIGN 7), brentq"})


def _breakdown_measure(cfg: Mapping[str, Any]) -> Outcome:
    """measured / E17 at the predicted breakdown gamma (a stationary run there, its complete SE / E17)."""
    g = breakdown_gamma(cfg)
    m = recipes.stationary({**cfg, "gamma": g}, "excess_risk")
    e17 = recipes.theory({**cfg, "gamma": g}).neighborhood_excess_risk.value
    return Outcome(m.value / e17, m.se / e17, stationary=m.stationary, reason=m.reason, info={**m.info, "gamma": g})


register_claim(
    "E17-breakdown", tags=("E17", "E17 next order"),
    statement="{teacher} SGD: where the next-order prediction exceeds E17 by {level}x, so does the measurement",
    rule=Equal(), predict=_breakdown_predict, measure=_breakdown_measure,
    defaults={"E17-breakdown": {**_E17, "init": "optimum", "bracket": (0.02, 1.0), "level": 1.1, "chains": 64}})


# ------------------------------------------------------------------ E18, E19
register_claim(
    "E18", tags=("E18",), statement="frozen {teacher} targets, n={n}: excess risk of the minimiser = tr(H^-1 C)/(2n)",
    rule=Equal(), predict=lambda cfg: recipes.prediction(cfg, "finite_n_excess_risk"), measure=recipes.finite_n,
    defaults={"E18": {**TRIANGLE, "teacher": "onehot", "n": 5000, "chains": 128, "newton_steps": 12, "grad_tol": 1e-7}})


def e19_prediction(cfg: Mapping[str, Any]) -> Outcome:
    """The E19 threshold (the top Lyapunov exponent's sign change, `theory.lyapunov_threshold`) +- SE,
    memoised on the keys it reads."""
    return _e19({k: cfg[k] for k in ("task", "student", "gauge", "teacher", "seed", "lyapunov_steps") if k in cfg})


@recipes.memo
def _e19(cfg: Mapping[str, Any]) -> Outcome:
    from ..theory.lyapunov import lyapunov_threshold

    task, student, _ = recipes.objects(cfg)
    calL = recipes.theory(cfg).calL.value
    th = lyapunov_threshold(task, student, gamma_range=(0.5 / calL, 500.0 / calL), steps=int(cfg["lyapunov_steps"]),
                            seed=int(cfg["seed"]))
    return Outcome(th.gamma.value, th.gamma.se, info={"lyapunov_bracket": list(th.bracket), "one_over_calL": 1.0 / calL})


register_claim(
    "E19", tags=("E19",), statement="bcp SGD near theta*: the growth rate of ||theta - theta*|| changes sign at the "
    "top-Lyapunov threshold", rule=Equal(), predict=e19_prediction, measure=recipes.growth_threshold,
    defaults={"E19": {**TRIANGLE, "teacher": "bcp", "init": "perturbed", "batch": 1, "momentum": 0.0, "eval_n": 1000,
                      "init_scale": 1e-7, "steps": 2000, "eval_every": 10, "chains": 32,
                      "gammas": (3.0, 3.25, 3.5, 3.75), "seeds": (1, 2, 3, 4), "lyapunov_steps": 2000}})
