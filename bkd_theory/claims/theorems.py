"""Claim kinds shown by F2-F5 beyond the library's P1-P3, T1-T4, E17, E17', E17+ (DESIGN 2.3-2.7).

    P1-line       onehot risk - bcp risk = 0 at theta* + s v (E2), paired on one sample    Equal (prediction 0)
    P1-KL         onehot risk - E_x KL(p || q_theta) = F* = H(Y|X) at theta* + s v (E2)     Equal
    P2-empirical  the bcp empirical-risk gradient at theta* vanishes on n points (Prop. 2)  Zero (rounding)
    P2-SGD        bcp SGD converges to F*: the tail slope of log(F - F*) is < 0 (Prop. 2)    Sign("-")
    E4            sigma^2 of any teacher (biased ones too) = the general route E4           Equal
    E10           additive noise at nu_c has the gradient noise of onehot labels (E10)     Equal
    mu-local      lambda_min of the Hessian over a ball around theta* (DESIGN 2.6)         Finding

Each measurement draws from `rng.stream(seed, "claims", name_key(kind), ...)`, so a kind's numbers
depend on no other kind's. The defaults (`bkd check`) are on the triangle task with the linear
pinned-gauge student in float64; none is in `bkd check --quick` (the core kinds).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from .. import rng as rng_mod
from ..stats import mean_se
from ..verdicts import Equal, Finding, Outcome, Sign, Zero
from . import recipes
from .base import KINDS, register_claim
from .library import RUN, TRIANGLE

#: the configuration keys a point of the line theta* + s v depends on (the memo key of `line_point`)
LINE_KEYS = ("task", "student", "gauge", "features", "standardize", "seed", "direction_seed", "s", "n")


def _stream(kind: str, seed: int, *index: int) -> np.random.Generator:
    return rng_mod.stream(int(seed), "claims", rng_mod.name_key(kind), *index)


def _exact(text: str) -> Outcome:
    return Outcome(0.0, 0.0, info={"method": text})


# ------------------------------------------------------------------ P1 along a line (E2)
def direction(cfg: Mapping[str, Any]) -> torch.Tensor:
    """The unit direction v `[P]` of the line theta* + s v, drawn from `cfg["direction_seed"]` (shared
    by every point of the line, whatever its own seed)."""
    _, student, _ = recipes.objects({**cfg, "teacher": "bcp"})
    v = _stream("P1-line", int(cfg["direction_seed"]), 0).standard_normal(student.num_params)
    return torch.from_numpy(v / np.linalg.norm(v))


@recipes.memo
def _line_point(cfg: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    from ..losses import cross_entropy, kl_divergence

    task, student, _ = recipes.objects({**cfg, "teacher": "bcp"})
    theta = (student.optimum(task) + float(cfg["s"]) * direction(cfg))[None]
    x, y = task.sample(int(cfg["n"]), _stream("P1-line", int(cfg["seed"]), 1))
    log_p = torch.from_numpy(task.log_bcp(x))
    log_q = student.log_probs(theta, torch.from_numpy(x)[None])[0]
    onehot = cross_entropy(torch.from_numpy(np.eye(task.num_classes)[y]), log_q)
    bcp = cross_entropy(log_p.exp(), log_q)
    kl = kl_divergence(log_p, log_q)
    values = {"onehot - bcp": onehot - bcp, "onehot": onehot, "bcp": bcp, "onehot - KL": onehot - kl, "KL": kl}
    return {name: tuple(float(u) for u in mean_se(v.numpy())[:2]) for name, v in values.items()}


def line_point(cfg: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Sample means and SEs over n paired draws (x, y) at theta = theta* + s v (nats): "onehot"
    CE(e_y, q), "bcp" CE(p, q), "KL" KL(p || q), and the paired differences "onehot - bcp" and
    "onehot - KL" (one SE from the per-sample differences, since both terms share x)."""
    return _line_point({k: cfg[k] for k in LINE_KEYS if k in cfg})


def _line_info(cfg: Mapping[str, Any]) -> dict[str, Any]:
    pt = line_point(cfg)
    return {"s": float(cfg["s"]), "n": int(cfg["n"]), **{f"{k} (mean, se)": list(v) for k, v in pt.items()}}


def _p1_line(cfg: Mapping[str, Any]) -> Outcome:
    m, se = line_point(cfg)["onehot - bcp"]
    return Outcome(m, se, info=_line_info(cfg))


def _p1_kl_predict(cfg: Mapping[str, Any]) -> Outcome:
    task, _, _ = recipes.objects({**cfg, "teacher": "bcp"})
    f = task.conditional_entropy()
    return Outcome(float(f.value), float(f.se), info={"method": f"F* = H(Y|X): {f.method}"})


def _p1_kl(cfg: Mapping[str, Any]) -> Outcome:
    m, se = line_point(cfg)["onehot - KL"]
    return Outcome(m, se, info=_line_info(cfg))


_LINE = {**TRIANGLE, "teacher": "onehot", "direction_seed": 0, "s": 1.0, "n": 200_000}  # 4 SE ~ 0.005 nat
register_claim(
    "P1-line", tags=("E2",), statement="onehot and bcp risks coincide at theta* + {s} v (Prop. 1)",
    rule=Equal(), predict=lambda cfg: _exact("exact (Prop. 1: CE is linear in t and E[e_y | x] = p(x))"),
    measure=_p1_line, defaults={"P1-line": _LINE})
register_claim(
    "P1-KL", tags=("E2",), statement="onehot risk - E_x KL(p || q) = H(Y|X) at theta* + {s} v (Prop. 1)",
    rule=Equal(), predict=_p1_kl_predict, measure=_p1_kl, defaults={"P1-KL": _LINE})


# ------------------------------------------------------------------ P2 on a finite set, and in SGD
def _p2_empirical(cfg: Mapping[str, Any]) -> Outcome:
    """||(1/n) sum_i grad l(theta*; x_i, p(x_i))|| on n points (float64), with the onehot value beside it."""
    task, student, _ = recipes.objects({**cfg, "teacher": "bcp"})
    x, y = task.sample(int(cfg["n"]), _stream("P2-empirical", int(cfg["seed"]), 0))
    star, xt = student.optimum(task)[None], torch.from_numpy(x)[None]
    bcp = float(student.batch_grad(star, xt, torch.from_numpy(task.bcp(x))[None]).norm())
    onehot = float(student.batch_grad(star, xt, torch.from_numpy(np.eye(task.num_classes)[y])[None]).norm())
    return Outcome(bcp, 0.0, info={"n": int(cfg["n"]), "onehot_grad_norm": onehot})


register_claim(
    "P2-empirical", tags=("Prop. 2",),
    statement="bcp targets: the empirical-risk gradient on n={n} points vanishes at theta*",
    rule=Zero(1e-12), predict=lambda cfg: _exact("exact (Prop. 2: every per-sample gradient vanishes)"),
    measure=_p2_empirical, defaults={"P2-empirical": {**TRIANGLE, "teacher": "bcp", "n": 20000}})

register_claim(
    "P2-SGD", tags=("Prop. 2", "DESIGN 2.9"),
    statement="{teacher} SGD at gamma={gamma}: F - F* keeps falling (tail slope of log(F - F*) < 0 beyond 4 SE)",
    rule=Sign("-"), predict=lambda cfg: _exact("Prop. 2: no gradient noise at theta*, no neighborhood (slope 0: plateau)"),
    measure=recipes.tail_slope,
    defaults={"P2-SGD": {**RUN, "teacher": "bcp", "gamma": 0.5, "init_scale": 0.3, "steps": 2000, "eval_every": 50,
                         "chains": 16}})


# ------------------------------------------------------------------ sigma^2 by the general route (E4), nu_c (E10)
def _sigma2_measure(cfg: Mapping[str, Any]) -> Outcome:
    return KINDS.get("P3").obj.measure(cfg)  # the one measurement of sigma^2 at theta* (P3's recipe)


_P3 = {**TRIANGLE, "n": 32768}
register_claim(
    "E4", tags=("E4",), statement="sigma^2 of {teacher} targets at theta* equals E4 (variance + bias, general route)",
    rule=Equal(), predict=lambda cfg: recipes.prediction(cfg, "sigma2"), measure=_sigma2_measure,
    defaults={"E4-smoothing": {**_P3, "teacher": "smoothing:0.1"}, "E4-temperature": {**_P3, "teacher": "temperature:2"}})


def _e10_measure(cfg: Mapping[str, Any]) -> Outcome:
    """sigma^2 of additive:nu_c targets, nu_c from the theory (E10); the SE adds nu_c's own error,
    propagated through sigma^2_additive(nu) = nu sigma^2_additive(1) (E7)."""
    nu = recipes.theory(cfg).critical_noise
    m = _sigma2_measure({**cfg, "teacher": f"additive:{float(nu.value)!r}"})
    se = math.hypot(m.se, m.value / nu.value * nu.se)
    return Outcome(m.value, se, info={**m.info, "nu_c": float(nu.value), "nu_c_se": float(nu.se)})


register_claim(
    "E10", tags=("E10", "E6", "E7"), statement="additive noise at nu_c gives the gradient noise of onehot labels",
    rule=Equal(), predict=lambda cfg: recipes.prediction(cfg, "sigma2_closed_form"), measure=_e10_measure,
    defaults={"E10": {**_P3, "teacher": "onehot"}})


# ------------------------------------------------------------------ local curvature (DESIGN 2.6)
def _mu_local(cfg: Mapping[str, Any]) -> Outcome:
    from ..theory.constants import local_constants

    task, student, _ = recipes.objects(cfg)
    loc = local_constants(task, student, radius=float(cfg["radius"]), seed=int(cfg["seed"]))
    return Outcome(loc.mu, 0.0, info={"L_local": loc.L, "radius": loc.radius, "region": loc.region})


register_claim(
    "mu-local", tags=("DESIGN 2.6",), statement="lambda_min of the Hessian over the ball of radius {radius} around theta*, "
    "beside lambda_min(H*) on its range", rule=Finding(), predict=lambda cfg: recipes.prediction(cfg, "H_eig_min"),
    measure=_mu_local, defaults={"mu-local": {**TRIANGLE, "teacher": "bcp", "radius": 1.5}})
