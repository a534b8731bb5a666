"""The claim kinds of the distillation protocol (DESIGN 2.10): Adam (E21) and the KD mixture (E20).

    E21            Adam's stationary E[F - F*] = (gamma / 4b) sum_i C_ii / (sqrt(C_ii / b) + eps)   Equal
    E21-bcp        exact BCPs, beta1 = 0: Adam converges iff gamma / eps < gamma_E19                  Equal
    E21-bcp-momentum  the same with beta1 > 0 (SGD with EMA momentum in the limit; no theory)         Finding
    E21-bcp-hover  exact BCPs, eps << gamma / gamma_E19: the level where Adam hovers (no theory)     Finding
    E20-sigma2     sigma^2(lam) = a (1 - lam)^2 + b lam^2 + 2 c lam (1 - lam) (one coefficient)     Equal
    E20-lambda     the stationary E[F - F*] is minimised on a lam grid at lambda_star                 Equal
    E20-lambda-n   the finite-n excess risk of the minimiser is minimised at lambda_star_n            Equal
    E20-margin     E[F - F*] at lam = 0 (or 1) exceeds its value at lambda_star by the E20 margin     Equal

E21-bcp (derived here): with exact BCPs every per-sample gradient is A_k delta to first order, so
v_hat -> 0 with the gradients. Once sqrt(v_hat) << eps, P = 1 / (sqrt(v_hat) + eps) -> 1 / eps, and
with beta1 = 0 (m_hat = g) Adam is plain SGD with step gamma / eps; linearised bcp SGD contracts
iff its step is below the E19 threshold (the sign change of the top Lyapunov exponent), so Adam's
growth rate near theta* changes sign at gamma* = eps gamma_E19. Where sqrt(v_hat) >> eps the step is
scale-free (m_hat / sqrt(v_hat) is O(1)), so Adam cannot settle below |g| ~ eps when gamma / eps
is above the threshold: it hovers (E21-bcp-hover). With beta1 > 0 the limit is SGD with EMA
momentum, whose threshold is not derived here (E21-bcp-momentum measures it beside eps gamma_E19).

E20 for a biased teacher: lam^2 B / 2 is the bias expanded to second order; the exact F(theta_lam) - F*
is lower for temperature:TAU with TAU > 1 (at lam = 1 it is the E22 (b) floor, 27 % below B / 2 at
TAU = 1.2), so the measured best lam lies above lambda_star and lambda_star_n. The predictions'
records carry `lambda_star_exact_bias` (`distillation.lambda_star_exact`: the exact bias and H, C
at theta_lam, without the O(lam gamma) and O(lam / n) cross terms) beside them.

Best lam: each lam point of a stationary grid is its own run with its own seed (independent
errors); the vertex of the weighted least-squares parabola through the points, with the delta-
method SE of the fit, is the measured best lam. Finite n: the replicas' training sets are shared
by every lam (the same inputs, labels and frozen teacher draws), so each replica's parabola is fitted
and the vertex of the mean parabola carries the SE across replicas (paired, exact E_x on triangle).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .. import rng as rng_mod
from ..threads import single_thread
from ..stats import mean_se
from ..verdicts import Equal, Finding, Outcome
from . import recipes
from .base import register_claim
from .library import RUN, TRIANGLE, e19_prediction


# ------------------------------------------------------------------ E21: Adam's stationary neighborhood
def _e21_measure(cfg: Mapping[str, Any]) -> Outcome:
    """Adam's stationary E[F - F*] (`recipes.stationary`), with its ratio to SGD's E17 at the same gamma."""
    m = recipes.stationary(cfg, "excess_risk")
    e17 = recipes.theory({**cfg, "optimizer": "sgd"}).neighborhood_excess_risk.value
    e21 = recipes.theory(cfg).neighborhood_excess_risk.value
    info = {**m.info, "E17_sgd": e17, "measured_over_E17": m.value / e17, "measured_over_E17_se": m.se / e17,
            "E21_over_E17": e21 / e17}
    return Outcome(m.value, m.se, stationary=m.stationary, reason=m.reason, info=info)


_ADAM = {**RUN, "optimizer": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "init": "optimum", "init_scale": 0.0,
         "steps": "auto", "burn": 2.5, "eval_n": 4000, "eval_every": 50}
register_claim(
    "E21", tags=("E21",), statement="{teacher} Adam at gamma={gamma}, eps={eps}: stationary E[F - F*] = "
    "(gamma/4b) sum_i C_ii / (sqrt(C_ii/b) + eps)", rule=Equal(),
    predict=lambda cfg: recipes.prediction(cfg, "neighborhood_excess_risk"), measure=_e21_measure,
    defaults={"E21-onehot": {**_ADAM, "teacher": "onehot", "gamma": 0.005},
              "E21-dirichlet": {**_ADAM, "teacher": "dirichlet:1", "gamma": 0.005},
              "E21-additive": {**_ADAM, "teacher": "additive:0.02", "gamma": 0.005}})


# ------------------------------------------------------------------ E21 with exact BCPs
def _bcp_predict(cfg: Mapping[str, Any]) -> Outcome:
    """gamma* = eps gamma_E19 (module docstring), from the E19 threshold of the same task."""
    e19 = e19_prediction(cfg)
    eps = float(cfg["eps"])
    return Outcome(eps * e19.value, eps * e19.se, info={**e19.info, "gamma_E19": e19.value, "eps": eps})


def _hover_measure(cfg: Mapping[str, Any]) -> Outcome:
    """Adam's stationary F - F* with exact BCPs over the last half, and its ratio to gamma^2."""
    m = recipes.stationary(cfg, "excess_risk")
    g2 = float(cfg["gamma"]) ** 2
    return Outcome(m.value, m.se, stationary=m.stationary, reason=m.reason,
                   info={**m.info, "over_gamma2": m.value / g2, "over_gamma2_se": m.se / g2})


_BCP = {**TRIANGLE, "teacher": "bcp", "optimizer": "adam", "beta1": 0.0, "beta2": 0.999, "eps": 0.1, "init": "perturbed",
        "batch": 1, "momentum": 0.0, "eval_n": 1000, "init_scale": 1e-7, "steps": 2000, "eval_every": 10, "chains": 32,
        "gammas": (0.3, 0.325, 0.35, 0.375), "seeds": (1, 2, 3, 4), "lyapunov_steps": 2000}
register_claim(
    "E21-bcp", tags=("E21", "E19"), statement="bcp Adam (beta1={beta1}, eps={eps}) near theta*: the growth rate of "
    "||theta - theta*|| changes sign at gamma = eps gamma_E19", rule=Equal(), predict=_bcp_predict,
    measure=recipes.growth_threshold, defaults={"E21-bcp": _BCP})
register_claim(
    "E21-bcp-momentum", tags=("E21", "E19"), statement="bcp Adam (beta1={beta1}, eps={eps}) near theta*: where the "
    "growth rate changes sign, beside eps gamma_E19 (derived for beta1 = 0 only)", rule=Finding(), predict=_bcp_predict,
    measure=recipes.growth_threshold,
    defaults={"E21-bcp-momentum": {**_BCP, "beta1": 0.9, "gammas": (0.275, 0.3, 0.325, 0.35), "seeds": (5, 6, 7, 8)}})
register_claim(
    "E21-bcp-hover", tags=("E21",), statement="bcp Adam at gamma={gamma}, eps={eps} (gamma/eps above the E19 "
    "threshold): F - F* hovers above rounding (no theory for the level)", rule=Finding(),
    predict=lambda cfg: Outcome(math.nan, 0.0, info={"method": "none: the linearisation breaks (C = 0)"}),
    measure=_hover_measure,
    defaults={"E21-bcp-hover": {**RUN, "teacher": "bcp", "optimizer": "adam", "beta1": 0.9, "beta2": 0.999,
                                "eps": 1e-8, "gamma": 0.002, "init": "perturbed", "init_scale": 0.5, "steps": 6000,
                                "eval_every": 50, "chains": 32, "eval_n": 2000}})


# ------------------------------------------------------------------ E20: sigma^2(lam)
_COEF = {"a": 0, "b": 1, "c": 2}


def _basis(lams: np.ndarray) -> np.ndarray:
    """[(1 - lam)^2, lam^2, 2 lam (1 - lam)] `[m, 3]`: sigma^2(lam) = basis @ (a, b, c)."""
    lams = np.asarray(lams, dtype=np.float64)
    return np.stack([(1 - lams) ** 2, lams**2, 2 * lams * (1 - lams)], axis=1)


def _coef(cfg: Mapping[str, Any]) -> int:
    if cfg["coef"] not in _COEF:
        raise ValueError(f"coef must be one of a, b, c, got {cfg['coef']!r}")
    return _COEF[cfg["coef"]]


def _sigma2_predict(cfg: Mapping[str, Any]) -> Outcome:
    """The E20 coefficient `coef` of the base teacher (`distillation.kd_noise`, quadrature)."""
    from ..theory.distillation import kd_noise
    from ..theory.integrate import integrator

    task, student, teacher = recipes.objects(cfg)
    integ = integrator(task, student, teacher, seed=int(cfg["seed"]))
    kd = kd_noise(task, student, teacher, integ.nodes)
    value = (kd.a, kd.b, kd.c)[_coef(cfg)]
    return Outcome(float(value), 0.0, info={"a": kd.a, "b": kd.b, "c": kd.c, "method": f"E20 on {integ.method}"})


def _sigma2_measure(cfg: Mapping[str, Any]) -> Outcome:
    """sigma^2 at theta* of Mixture(lam, teacher) on the grid `lams` (independent Monte Carlo streams,
    `n` probes each), fitted by weighted least squares on `_basis`; the chi^2 of the fit tests the
    quadratic form."""
    from ..instruments import sigma2_at_optimum
    from ..teachers import Mixture

    task, student, teacher = recipes.objects(cfg)
    lams = np.asarray(cfg["lams"], dtype=np.float64)
    est = [sigma2_at_optimum(student, task, Mixture(float(l), teacher), int(cfg["n"]),
                             rng_mod.stream(int(cfg["seed"]), "claims", 20, i)) for i, l in enumerate(lams)]
    y, se = np.array([e.value for e in est]), np.array([e.se for e in est])
    X = _basis(lams) / se[:, None]
    cov = np.linalg.inv(X.T @ X)
    coef = cov @ X.T @ (y / se)
    chi2 = float(np.sum(((_basis(lams) @ coef - y) / se) ** 2))
    i = _coef(cfg)
    info = {"lams": lams.tolist(), "sigma2": y.tolist(), "sigma2_se": se.tolist(), "a": coef[0], "b": coef[1],
            "c": coef[2], "chi2": chi2, "dof": len(lams) - 3}
    return Outcome(float(coef[i]), float(math.sqrt(cov[i, i])), info=info)


_SIGMA2 = {**TRIANGLE, "n": 32768, "lams": (0.0, 0.25, 0.5, 0.75, 1.0)}
register_claim(
    "E20-sigma2", tags=("E20", "E4"), statement="sigma^2 of mixture:lam:{teacher} at theta* is quadratic in lam with "
    "the E20 coefficient {coef} (label cross term included)", rule=Equal(), predict=_sigma2_predict,
    measure=_sigma2_measure,
    defaults={"E20-sigma2-c": {**_SIGMA2, "teacher": "mixture:0.5:dirichlet:1", "coef": "c"}})


# ------------------------------------------------------------------ E20: the best lam
def _lam_points(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The stationary runs of a lam grid: lam = lams[i] with seed seeds[i] (independent points)."""
    if len(cfg["lams"]) != len(cfg["seeds"]) or len(cfg["lams"]) < 3:
        raise ValueError(f"lams and seeds must have the same length >= 3, got {cfg['lams']} and {cfg['seeds']}")
    base = {k: v for k, v in cfg.items() if k not in ("lams", "seeds")}
    return [{**base, "lam": float(l), "seed": int(s)} for l, s in zip(cfg["lams"], cfg["seeds"])]


def vertex(coef: np.ndarray, cov: np.ndarray) -> tuple[float, float]:
    """(lam_hat, SE) of the minimiser -c1 / (2 c2) of c0 + c1 lam + c2 lam^2, delta method with `cov`
    `[3, 3]` of (c0, c1, c2)."""
    c1, c2 = float(coef[1]), float(coef[2])
    lam = -c1 / (2 * c2)
    grad = np.array([0.0, -1 / (2 * c2), c1 / (2 * c2**2)])
    return lam, float(math.sqrt(max(grad @ cov @ grad, 0.0)))


def _fit(lams: np.ndarray, y: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares parabola (c0, c1, c2) through (lams, y +- se) and its covariance."""
    X = np.vander(np.asarray(lams, dtype=np.float64), 3, increasing=True) / se[:, None]
    cov = np.linalg.inv(X.T @ X)
    return cov @ X.T @ (y / se), cov


def lambda_curve(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The measured stationary E[F - F*] of every point of the lam grid: lams, values, SEs, stationarity."""
    outs = recipes.stationaries(_lam_points(cfg), "excess_risk")
    return {"lams": np.asarray(cfg["lams"], dtype=np.float64), "value": np.array([o.value for o in outs]),
            "se": np.array([o.se for o in outs]), "stationary": [o.stationary for o in outs],
            "reasons": [o.reason for o in outs], "steps": [o.info["steps"] for o in outs]}


def _lambda_measure(cfg: Mapping[str, Any]) -> Outcome:
    """The vertex of the weighted parabola through the stationary lam grid (module docstring)."""
    c = lambda_curve(cfg)
    coef, cov = _fit(c["lams"], c["value"], c["se"])
    lam, se = vertex(coef, cov)
    bad = [f"lam={l:g}: {r}" for l, s, r in zip(c["lams"], c["stationary"], c["reasons"]) if s is False]
    info = {"lams": c["lams"].tolist(), "excess_risk": c["value"].tolist(), "excess_risk_se": c["se"].tolist(),
            "parabola": coef.tolist(), "steps": c["steps"]}
    return Outcome(lam, se, stationary=False if bad else True, reason="; ".join(bad), info=info)


def _theory_cfg(cfg: Mapping[str, Any], **over: Any) -> dict[str, Any]:
    return {**{k: v for k, v in cfg.items() if k not in ("lam", "lams", "seeds")}, **over}


def _exact_best(cfg: Mapping[str, Any], finite: bool) -> dict[str, Any]:
    """For the record: the best lam without E20's expansion in the bias (`distillation.lambda_star_exact`,
    quadrature), where it applies; not the claim's prediction."""
    from ..theory.distillation import lambda_star_exact
    from ..theory.integrate import quadrature

    task, student, teacher = recipes.objects(cfg)
    quad = quadrature(task)
    if quad is None:
        return {}
    try:
        kw = {"n": int(cfg["n"])} if finite else {"gamma": float(cfg["gamma"]), "batch": int(cfg.get("batch", 1))}
        return {"lambda_star_exact_bias": lambda_star_exact(task, student, teacher, quad.nodes, **kw)}
    except ValueError:
        return {}


_LAMBDA = {**RUN, "init": "optimum", "init_scale": 0.0, "steps": "auto", "burn": 2.5, "min_steps": 1000,
           "eval_n": 4000, "eval_every": 50, "gamma": 0.05, "chains": 32}
register_claim(
    "E20-lambda", tags=("E20", "E17"), statement="{teacher} KD mixture, SGD at gamma={gamma}: the stationary "
    "E[F - F*] on a lam grid is smallest at lambda_star", rule=Equal(),
    predict=lambda cfg: recipes.prediction(_theory_cfg(cfg), "lambda_star", **_exact_best(cfg, False)),
    measure=_lambda_measure,
    defaults={"E20-lambda-additive": {**_LAMBDA, "teacher": "additive:0.02", "lams": (0.25, 0.5, 0.75, 1.0),
                                      "seeds": (11, 12, 13, 14)}})


# ------------------------------------------------------------------ E20: the best lam at finite n
def mixture_spec(lam: float, teacher: str) -> str:
    """The teacher spec of the KD objective with weight lam (`teachers.with_lam` as a spec)."""
    return teacher if lam >= 1.0 else f"mixture:{lam:g}:{teacher}"


def lambda_curve_n(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Per replica, the excess risk of the empirical minimiser on the lam grid `[R, m]` (the same
    training sets and frozen draws for every lam; `recipes.minimisers`, exact E_x only)."""
    cols = []
    with single_thread():  # per-replica Newton steps on small tensors: one thread is fastest (as `engine.run`)
        for lam in cfg["lams"]:
            c = {**_theory_cfg(cfg), "teacher": mixture_spec(float(lam), cfg["teacher"])}
            kl, se_e, how = recipes.expected_kl(c, recipes.minimisers(c))
            if se_e:
                raise ValueError(f"E20-lambda-n needs an exact E_x (quadrature points); this task has {how}")
            cols.append(kl)
    return {"lams": np.asarray(cfg["lams"], dtype=np.float64), "kl": np.stack(cols, axis=1)}


def _lambda_n_measure(cfg: Mapping[str, Any]) -> Outcome:
    """The vertex of the mean of the replicas' least-squares parabolas (paired; module docstring)."""
    c = lambda_curve_n(cfg)
    X = np.vander(c["lams"], 3, increasing=True)
    per = c["kl"] @ np.linalg.pinv(X).T  # [R, 3]: each replica's parabola
    coef, _, _ = mean_se(per, axis=0)
    R = per.shape[0]
    lam, se = vertex(coef, np.cov(per, rowvar=False) / R)
    m, m_se, _ = mean_se(c["kl"], axis=0)
    info = {"lams": c["lams"].tolist(), "excess_risk": np.asarray(m).tolist(), "excess_risk_se": np.asarray(m_se).tolist(),
            "parabola": np.asarray(coef).tolist(), "replicas": int(R)}
    return Outcome(lam, se, info=info)


_LAMBDA_N = {**TRIANGLE, "chains": 128, "newton_steps": 12, "grad_tol": 1e-7}
register_claim(
    "E20-lambda-n", tags=("E20", "E18"), statement="{teacher} KD mixture, n={n} frozen points: the minimiser's "
    "excess risk on a lam grid is smallest at lambda_star_n", rule=Equal(),
    predict=lambda cfg: recipes.prediction(_theory_cfg(cfg), "lambda_star_n", **_exact_best(cfg, True)),
    measure=_lambda_n_measure,
    defaults={"E20-lambda-n-additive": {**_LAMBDA_N, "teacher": "additive:0.02", "n": 2000, "lams": (0.0, 0.5, 1.0)}})


# ------------------------------------------------------------------ E20: the margin of the optimum
def _margin_points(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the run at lam = `against`, the run at lambda_star), with seeds `seeds` (independent)."""
    star = recipes.theory(_theory_cfg(cfg)).lambda_star.value
    base = _theory_cfg(cfg)
    return ({**base, "lam": float(cfg["against"]), "seed": int(cfg["seeds"][0])},
            {**base, "lam": float(star), "seed": int(cfg["seeds"][1])})


def _margin_predict(cfg: Mapping[str, Any]) -> Outcome:
    """E20: kd_excess_risk(against) - kd_excess_risk(lambda_star)."""
    hi, lo = (recipes.theory(p).kd_excess_risk for p in _margin_points(cfg))
    return Outcome(hi.value - lo.value, math.hypot(hi.se, lo.se), info={"lambda_star": _margin_points(cfg)[1]["lam"],
                                                                        "at_against": hi.value, "at_star": lo.value})


def _margin_measure(cfg: Mapping[str, Any]) -> Outcome:
    hi, lo = recipes.stationaries(_margin_points(cfg), "excess_risk")
    bad = "; ".join(o.reason for o in (hi, lo) if o.stationary is False)
    return Outcome(hi.value - lo.value, math.hypot(hi.se, lo.se), stationary=False if bad else True, reason=bad,
                   info={"at_against": hi.value, "at_against_se": hi.se, "at_star": lo.value, "at_star_se": lo.se})


register_claim(
    "E20-margin", tags=("E20",), statement="{teacher} KD mixture, SGD at gamma={gamma}: E[F - F*] at lam={against} "
    "exceeds its value at lambda_star by the E20 margin", rule=Equal(), predict=_margin_predict, measure=_margin_measure,
    defaults={"E20-margin-0": {**_LAMBDA, "teacher": "additive:0.005", "against": 0.0, "seeds": (21, 22)}})
