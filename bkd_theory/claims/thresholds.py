"""Claim kinds shown by F7, F8, F10: step-size thresholds, generalisation at finite n, Monte Carlo teachers.

    E19-convergence  bcp's largest convergent gamma on a grid (DESIGN 2.9 criterion) lies below
                     the E19 threshold                                                          Sign (-)
    T1-range         bcp SGD converges beyond T1's range: largest convergent grid gamma > 1/calL  Sign (+)
    tolerance-step   onehot: the gamma where the stationary F - F* reaches a fraction of F0
                     (a tolerance level, not a convergence threshold), beside next-order E17    Finding
    stability-step   the largest grid gamma at which no chain diverges                          Finding
    P2-finite        bcp frozen targets: the empirical minimiser on n points is theta* (Prop. 2) Zero
    E18-ratio        excess-risk ratio of two frozen teachers = E18's tr(H^-1 C) ratio          Equal
    E18-crossover    the additive nu that generalises like onehot labels = E18's (vs E10 nu_c)  Equal
    accuracy-loss    accuracy lost to frozen label noise (exact E_x over p, eval-sample error)  Finding
    E9-slope         log-log slope in S of stationary E[F - F*] with mc(S, base) targets = the
                     slope of its prediction (E9 with E17 next order)                            Equal

The measured growth-rate threshold itself is the library kind E19; convergence, growth rates and
finite-n training are the shared recipes (`recipes.converges`, `recipes.growth_threshold`,
`recipes.minimisers`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from .. import rng as rng_mod
from ..stats import crossing, loglog_slope, mean_se, ratio_se
from ..verdicts import Equal, Finding, Outcome, Sign, Zero
from . import recipes
from .base import register_claim
from .library import TRIANGLE, e19_prediction


@recipes.memo
def initial_excess_risk(cfg: Mapping[str, Any]) -> Outcome:
    """F0 = E[F(theta_0)] - F* for theta_0 = theta* + init_scale N(0, I) (`init="perturbed"`):
    the mean over `f0_draws` draws (`recipes.expected_kl`), SE across draws and from the inputs (nats)."""
    task, student, _ = recipes.objects(cfg)
    rng = rng_mod.stream(int(cfg["seed"]), "claims", 70, 1)
    noise = torch.from_numpy(rng.standard_normal((int(cfg["f0_draws"]), student.num_params)))
    theta = student.optimum(task)[None] + float(cfg["init_scale"]) * student.identifiable(noise)
    kl, se_e, _ = recipes.expected_kl(cfg, theta)
    m, se, n = mean_se(kl)
    return Outcome(m, math.hypot(se, se_e), info={"draws": n, "init_scale": float(cfg["init_scale"])})


TOLERANCE_KEYS = ("fraction", "f0_draws")


def _tolerance_level(cfg: Mapping[str, Any]) -> tuple[float, float]:
    """(tau, its SE) = fraction x F0 (nats)."""
    f0 = initial_excess_risk({k: cfg[k] for k in ("task", "student", "gauge", "teacher", "seed", "init_scale", "f0_draws")})
    return float(cfg["fraction"]) * f0.value, float(cfg["fraction"]) * f0.se


def tolerance_step(cfg: Mapping[str, Any]) -> Outcome:
    """The gamma where the stationary E[F - F*] (`recipes.stationary`, independent seeds per grid
    point) rises through tau = fraction x F0: log-log interpolation between the bracketing points
    (`stats.crossing` on log values), SE from theirs combined with the level's."""
    tau, tau_se = _tolerance_level(cfg)
    outs = [recipes.stationary(c, "excess_risk") for c in recipes.points(cfg, drop=TOLERANCE_KEYS)]
    y = np.array([o.value for o in outs])
    s = np.array([o.se for o in outs]) / y
    g, g_se = crossing(cfg["gammas"], np.log(y), s, math.log(tau))
    if not math.isfinite(g):
        raise ValueError(f"the stationary F - F* does not rise through {tau:.3g} on gammas={list(cfg['gammas'])}")
    g_up, _ = crossing(cfg["gammas"], np.log(y), s, math.log(tau + tau_se))
    i = int(np.searchsorted(cfg["gammas"], g))  # the crossing reads the bracketing points (i - 1, i) only
    bad = [c["gamma"] for o, c in list(zip(outs, recipes.points(cfg, drop=TOLERANCE_KEYS)))[i - 1:i + 1]
           if o.stationary is False]
    info = {"level": tau, "level_se": tau_se, "values": y.tolist(), "values_se": (s * y).tolist(),
            "stationary": [o.stationary for o in outs],
            "label": f"tolerance level: stationary F - F* <= {cfg['fraction']:g} F0 (not a convergence threshold)"}
    return Outcome(g, math.hypot(g_se, abs(g_up - g) if math.isfinite(g_up) else 0.0), stationary=not bad,
                   reason=f"not stationary at gamma={bad}" if bad else "", info=info)


def tolerance_prediction(cfg: Mapping[str, Any]) -> Outcome:
    """The gamma where next-order E17 reaches tau (root in log gamma below the first-order E17
    crossing 4 tau / sigma^2, where next order >= first order); the first-order value in info."""
    from scipy.optimize import brentq

    tau, _ = _tolerance_level(cfg)
    base = {k: v for k, v in recipes.points(cfg, drop=TOLERANCE_KEYS)[0].items() if k != "gamma"}
    first = 4.0 * tau / recipes.theory({**base, "gamma": 1.0}).sigma2.value  # E17 = gamma sigma^2 / 4

    def gap(log_g: float) -> float:
        e = recipes.theory({**base, "gamma": math.exp(log_g)}).values.get("neighborhood_excess_risk_corrected")
        return math.inf if e is None or not math.isfinite(e.value) else math.log(e.value / tau)

    g = math.exp(brentq(gap, math.log(first / 4.0), math.log(first), xtol=1e-3))  # 0.1 % in gamma
    return Outcome(g, 0.0, info={"first_order_E17_step": first, "method": "next-order E17 (theory.predict) = tau"})


def stability_step(cfg: Mapping[str, Any]) -> Outcome:
    """The largest grid gamma up to which no chain of the points' runs diverged (`engine.divergence`:
    non-finite, or ||theta - theta*|| or F - F* far beyond their start); a lower bound when none did."""
    div = [recipes.run(c).diverged_chains for c in recipes.points(cfg, drop=TOLERANCE_KEYS)]
    i = next((j for j, d in enumerate(div) if d), len(div)) - 1
    if i < 0:
        raise ValueError(f"a chain diverged at the smallest gamma {cfg['gammas'][0]:g}")
    note = "no chain diverged on the grid: a lower bound" if i == len(div) - 1 else f"diverged at {cfg['gammas'][i + 1]:g}"
    return Outcome(float(cfg["gammas"][i]), 0.0, info={"diverged_chains": div, "note": note})


def _calL_range(cfg: Mapping[str, Any]) -> Outcome:
    p = recipes.theory({**cfg, "gamma": 1.0})
    return Outcome(p.gamma_max_T1.value, p.gamma_max_T1.se, info={"calL": p.calL.value, "calL_method": p.calL.method})


def _none(cfg: Mapping[str, Any]) -> Outcome:
    return Outcome(math.nan, math.nan, info={"method": "no prediction"})


_BCP = {**TRIANGLE, "teacher": "bcp", "init": "perturbed", "batch": 1, "momentum": 0.0, "eval_n": 1000}
_CONV = {**_BCP, "init_scale": 1.0, "steps": "converge", "min_steps": 1500, "records": 100, "chains": 16,
         "lyapunov_steps": 2000, "gammas": (0.0625, 0.5, 1.0, 2.0, 3.0, 4.0), "seeds": (1, 2, 3, 4, 5, 6)}
_TOL = {**TRIANGLE, "teacher": "onehot", "init": "perturbed", "init_scale": 1.0, "batch": 1, "momentum": 0.0,
        "steps": "auto", "burn": 3.0, "min_steps": 400, "chains": 16, "eval_n": 1000, "eval_every": 50,
        "gammas": (0.05, 0.1, 0.2, 0.4), "seeds": (1, 2, 3, 4), "fraction": 0.1, "f0_draws": 1024}
register_claim(
    "E19-convergence", tags=("E19", "DESIGN 2.9"),
    statement="bcp SGD from theta* + {init_scale} N(0, I) converges (F - F* to 1e-8 F0, or on course) only below the "
    "E19 threshold: the largest convergent grid gamma < gamma_Lyapunov", rule=Sign("-"), predict=e19_prediction,
    measure=recipes.convergence_bracket, defaults={"E19-convergence": _CONV})
register_claim(
    "T1-range", tags=("T1", "E12"), statement="bcp SGD converges beyond T1's step-size range: the largest gamma up "
    "to which every grid point converges > 1/calL", rule=Sign("+"), predict=_calL_range, measure=recipes.convergence_bracket,
    defaults={"T1-range": _CONV})
register_claim(
    "tolerance-step", tags=("E17 next order", "DESIGN 2.9"),
    statement="{teacher} SGD: the largest gamma whose stationary F - F* <= {fraction} F0 (a tolerance level, init "
    "scale {init_scale}; not a convergence threshold), beside where next-order E17 says", rule=Finding(),
    predict=tolerance_prediction, measure=tolerance_step, defaults={"tolerance-step": _TOL})
register_claim(
    "stability-step", tags=("DESIGN 2.9",), statement="{teacher} SGD: the largest grid gamma at which no chain diverges",
    rule=Finding(), predict=_none, measure=stability_step, defaults={"stability-step": _TOL})


# ------------------------------------------------------------------ F8: finite n (E18, E10, Prop. 2)
def accuracy_loss(cfg: Mapping[str, Any], block: int = 16) -> Outcome:
    """Accuracy lost to the training targets: E_x[max_k p_k(x) - p_{argmax q_theta_n}(x)] (the Bayes
    classifier's accuracy minus the trained student's, both exact over the label given x), on
    `accuracy_eval` fresh inputs shared by the replicas: SE across replicas combined with the
    evaluation-sample term (SD over the inputs of the replica-averaged loss / sqrt(m), DESIGN 2.9 (c))."""
    task, student, _ = recipes.objects(cfg)
    theta = recipes.minimisers(cfg)
    m = int(cfg.get("accuracy_eval", 2**16))
    x, _ = task.sample(m, rng_mod.stream(int(cfg["seed"]), "claims", 70, 2))
    p = task.bcp(x)
    xt = torch.from_numpy(x)
    hit = np.concatenate([p[np.arange(m)[None], student.log_probs(th, xt[None].expand(len(th), -1, -1)).argmax(-1).numpy()]
                          for th in torch.split(theta, block)])  # [R, m]: p of the predicted class
    loss = p.max(axis=1)[None] - hit
    value, se_r, R = mean_se(loss.mean(axis=1))
    se_e = mean_se(loss.mean(axis=0))[1]
    info = {"student_accuracy": float(hit.mean()), "theta_star_accuracy": float(p.max(axis=1).mean()),
            "bayes_accuracy_exact": float(task.bayes_accuracy().value), "se_replicas": se_r, "se_eval": se_e,
            "eval_error": f"added variance term over {m} shared fresh inputs", "replicas": R}
    return Outcome(value, math.hypot(se_r, se_e), info=info)


PAIR_KEYS = ("reference", "reference_seed", "nus", "seeds")


def _own(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The finite-n configuration of a ratio claim's own teacher (its pairing keys dropped)."""
    return {k: v for k, v in cfg.items() if k not in PAIR_KEYS}


def _reference(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration of the reference teacher (`reference`, `reference_seed`) of a ratio claim."""
    return {**_own(cfg), "teacher": cfg["reference"], "seed": int(cfg["reference_seed"])}


def _ratio(a: Outcome, b: Outcome, **info: Any) -> Outcome:
    return Outcome(a.value / b.value, ratio_se(a.value, a.se, b.value, b.se), info=info)


def _e18(cfg: Mapping[str, Any]) -> Outcome:
    return recipes.prediction(cfg, "finite_n_excess_risk")


def e18_ratio_prediction(cfg: Mapping[str, Any]) -> Outcome:
    """E18's tr(H^-1 C_T) / tr(H^-1 C_ref): the ratio of the two teachers' predicted excess risks."""
    return _ratio(_e18(_own(cfg)), _e18(_reference(cfg)), critical_noise=recipes.theory(cfg).critical_noise.value)


def e18_ratio_measured(cfg: Mapping[str, Any]) -> Outcome:
    """The ratio of the two teachers' measured excess risks (`recipes.finite_n`, independent seeds)."""
    a, b = recipes.finite_n(_own(cfg)), recipes.finite_n(_reference(cfg))
    return _ratio(a, b, teacher=a.value, teacher_se=a.se, reference=b.value, reference_se=b.se)


def additive_points(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The frozen additive(nu) configurations of a crossover claim, nu = nus[i] with seed seeds[i]."""
    return [{**_own(cfg), "teacher": f"additive:{nu:g}", "seed": int(s)} for nu, s in zip(cfg["nus"], cfg["seeds"])]


def crossover_measured(cfg: Mapping[str, Any]) -> Outcome:
    """nu* = E_ref / a where the measured additive excess risks follow E = a nu (E18 with E7: C is
    linear in nu; weighted least squares through 0, weights 1/SE^2), delta-method SE."""
    outs = [recipes.finite_n(c) for c in additive_points(cfg)]
    nu = np.asarray(cfg["nus"], float)
    e, s = np.array([o.value for o in outs]), np.array([o.se for o in outs])
    w = (nu / s) ** 2
    a, a_se = float(np.sum(w * e / nu) / np.sum(w)), float(1.0 / math.sqrt(np.sum(w)))
    ref = recipes.finite_n(_reference(cfg))
    return _ratio(ref, Outcome(a, a_se), slope=a, slope_se=a_se, values=e.tolist(), values_se=s.tolist())


def crossover_prediction(cfg: Mapping[str, Any]) -> Outcome:
    """nu where E18(additive(nu)) = E18(reference): E18(reference) / (E18(additive(1)) / 1), beside
    E10's nu_c (equal sigma^2, not equal generalisation)."""
    unit = _e18({**additive_points(cfg)[0], "teacher": "additive:1"})
    return _ratio(_e18(_reference(cfg)), unit, critical_noise=recipes.theory(_reference(cfg)).critical_noise.value)


_E18 = {**TRIANGLE, "n": 1000, "chains": 64, "newton_steps": 150, "grad_tol": 1e-7}
# 256 replicas: the ratio's relative SE (~0.05) resolves a 30 % error at 4 SE; small nu and Dirichlet
# targets keep the fixed-H^-1 Newton iteration of `recipes.finite_n` convergent in 60 steps at n = 1000
_PAIR = {**_E18, "chains": 256, "newton_steps": 60, "reference": "onehot", "reference_seed": 2}
register_claim(
    "P2-finite", tags=("Prop. 2",), statement="frozen bcp targets, n={n}: the empirical minimiser is theta*, excess risk 0",
    rule=Zero(1e-12), predict=lambda cfg: Outcome(0.0, 0.0, info={"method": "exact (Prop. 2)"}), measure=recipes.finite_n,
    defaults={"P2-finite": {**_E18, "teacher": "bcp", "chains": 8}})
register_claim(
    "E18-ratio", tags=("E18", "E10"), statement="n={n}: excess-risk ratio of frozen {teacher} / {reference} targets = "
    "E18's tr(H^-1 C) ratio", rule=Equal(), predict=e18_ratio_prediction, measure=e18_ratio_measured,
    defaults={"E18-ratio": {**_PAIR, "teacher": "dirichlet:1", "seed": 1}})
register_claim(
    "E18-crossover", tags=("E18", "E7", "E10"), statement="n={n}: frozen additive noise generalises like {reference} "
    "targets at the nu E18 says (not at E10's nu_c)", rule=Equal(), predict=crossover_prediction,
    measure=crossover_measured, defaults={"E18-crossover": {**_PAIR, "teacher": "additive:nu", "nus": (0.005, 0.01, 0.02),
                                                             "seeds": (3, 4, 5)}})
register_claim(
    "accuracy-loss", tags=("E18",), statement="frozen {teacher} targets, n={n}: accuracy lost against the Bayes classifier",
    rule=Finding(), predict=_none, measure=accuracy_loss, defaults={"accuracy-loss": {**_E18, "teacher": "onehot"}})


# ------------------------------------------------------------------ F10: Monte Carlo teachers (E9)
def mc_points(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The stationary-run configurations of an E9 slope: teacher mc(S, base) for S = samples[i], seed seeds[i]."""
    base = {k: v for k, v in cfg.items() if k not in ("samples", "seeds", "base")}
    return [{**base, "teacher": f"mc:{S}:{cfg['base']}", "seed": int(s)} for S, s in zip(cfg["samples"], cfg["seeds"])]


def e9_slope_prediction(cfg: Mapping[str, Any]) -> Outcome:
    """The log-log slope in S of next-order E17 with sigma_mc^2 (E9: -1, as the targets sum to 1)."""
    preds = [recipes.prediction(c, "neighborhood_excess_risk_corrected") for c in mc_points(cfg)]
    slope, se = loglog_slope(cfg["samples"], [o.value for o in preds], [max(o.se, 1e-300) for o in preds])
    return Outcome(slope, se, info={"predicted": [o.value for o in preds]})


def e9_slope_measured(cfg: Mapping[str, Any]) -> Outcome:
    """The weighted log-log slope in S of the stationary E[F - F*] (`recipes.stationary`, one seed per S,
    so the points are independent and `stats.loglog_slope`'s SE is valid)."""
    outs = recipes.stationaries(mc_points(cfg), "excess_risk")
    slope, se = loglog_slope(cfg["samples"], [o.value for o in outs], [o.se for o in outs])
    bad = [S for S, o in zip(cfg["samples"], outs) if o.stationary is False]
    return Outcome(slope, se, stationary=not bad, reason=f"not stationary at S={bad}" if bad else "",
                   info={"values": [o.value for o in outs], "values_se": [o.se for o in outs]})


register_claim(
    "E9-slope", tags=("E9", "E17 next order"), statement="mc(S, {base}) targets, gamma={gamma}: stationary E[F - F*] "
    "scales in S as its prediction (slope -1, E9)", rule=Equal(), predict=e9_slope_prediction, measure=e9_slope_measured,
    defaults={"E9-slope": {**TRIANGLE, "base": "onehot", "teacher": "mc:S:onehot", "samples": (1, 4, 16), "seeds": (1, 2, 3),
                           "gamma": 0.1, "init_scale": 0.0,
                           "init": "optimum", "steps": "auto", "burn": 3.0, "min_steps": 400, "chains": 16,
                           "eval_n": 1000, "eval_every": 50, "batch": 1, "momentum": 0.0}})
