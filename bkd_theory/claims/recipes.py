"""The shared recipes of the claims, each written once (DESIGN 2.9): the objects and theory of a
configuration, the instrumented run, the stationary neighborhood, the bound curve, finite-n
training and the convergence threshold.

A configuration is plain data: `RunConfig` fields (task, student, gauge, teacher, gamma, ...) plus
the recipe's own keys. Runs and predictions are memoised on the configuration (`memo`), so claims
that read the same run (E17 and E17', T-bounds and their curves) share it, and a figure that shows
a claim's curve reads the very numbers the claim was judged on.
"""
from __future__ import annotations

import dataclasses
import json
import math
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .. import rng as rng_mod
from ..stats import Z, mean_se
from ..verdicts import Outcome

#: a bound whose contraction (1 - its relative decay over the run) stays above 1 - VACUOUS_DECAY is vacuous
VACUOUS_DECAY = 0.01
#: "converges" (DESIGN 2.9): the tail slope of log(F - F*) is negative beyond Z SE, or F - F* fell to this share of F0
CONVERGED_FRACTION = 1e-8
#: configurations each recipe remembers (a figure's curve reads its points' runs back)
MEMO_SIZE = 64


# ------------------------------------------------------------------ configurations and the memo
def key(cfg: Mapping[str, Any]) -> str:
    """A canonical string for a configuration (sorted JSON; tuples as lists)."""
    return json.dumps(cfg, sort_keys=True, default=str)


def memo(fn: Callable[[Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], Any]:
    """Memoise a recipe on its configuration (the MEMO_SIZE most recent)."""
    cached = lru_cache(maxsize=MEMO_SIZE)(lambda k: fn(json.loads(k)))
    wrapper = lambda cfg: cached(key(cfg))  # noqa: E731
    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    wrapper.__doc__, wrapper.__name__ = fn.__doc__, fn.__name__
    return wrapper


def run_fields(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The `RunConfig` fields of a configuration."""
    from ..engine import RunConfig

    names = {f.name for f in dataclasses.fields(RunConfig)}
    return {k: v for k, v in cfg.items() if k in names}


@lru_cache(maxsize=16)
def _objects(task: str, student: str, gauge: str, features: str, teacher: str, standardize: bool) -> Any:
    from ..engine import build

    return build(task=task, student=student, gauge=gauge, features=features, teacher=teacher, dtype="float64",
                 standardize=standardize)


def objects(cfg: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(task, student, teacher) of a configuration, in float64."""
    s = _objects(str(cfg["task"]), str(cfg.get("student", "linear")), str(cfg.get("gauge", "pinned")),
                 str(cfg.get("features", "linear")), str(cfg["teacher"]), bool(cfg.get("standardize", False)))
    return s.task, s.student, s.base_teacher


THEORY_KEYS = ("task", "student", "gauge", "features", "standardize", "teacher", "gamma", "batch", "momentum", "n", "seed")


def theory(cfg: Mapping[str, Any]) -> Any:
    """`theory.predict` for the configuration (gamma, batch, momentum, n, seed as given; the other
    keys, which enter no prediction, are not part of the memo's key)."""
    return _theory({k: cfg[k] for k in THEORY_KEYS if k in cfg})


@memo
def _theory(cfg: Mapping[str, Any]) -> Any:
    from ..theory import predict

    task, student, teacher = objects(cfg)
    return predict(task, student, teacher, gamma=float(cfg.get("gamma", 1.0)), batch=int(cfg.get("batch", 1)),
                   momentum=float(cfg.get("momentum", 0.0)), n=cfg.get("n"), seed=int(cfg["seed"]))


def mu(cfg: Mapping[str, Any]) -> float:
    """lambda_min(H) at theta* on its range (the slowest mode of linearised SGD)."""
    return float(theory(cfg).H_eig_min.value)


def auto_steps(cfg: Mapping[str, Any]) -> int:
    """The steps of a stationary run: `cfg["steps"]`, or when it is "auto", enough that the slowest
    mode has relaxed by e^-burn (variance, exp(-2 gamma mu k)) when the averaging window (the last
    half) starts: max(min_steps, 2 burn / (2 gamma_eff mu)), rounded up to a multiple of eval_every."""
    steps = cfg.get("steps", "auto")
    if steps != "auto":
        return int(steps)
    g_eff = float(cfg["gamma"]) / (1.0 - float(cfg.get("momentum", 0.0)))
    k = max(int(cfg.get("min_steps", 1000)), math.ceil(2 * cfg.get("burn", 2.5) / (2 * g_eff * mu(cfg))))
    every = int(cfg.get("eval_every", 100))
    return every * math.ceil(k / every)


@memo
def run(cfg: Mapping[str, Any]) -> Any:
    """The instrumented loop of the configuration with the instruments `cfg["instruments"]` (registry names;
    observing every `eval_every` steps; default excess_risk and dist2), with `steps` resolved by `auto_steps`."""
    from ..engine import RunConfig
    from ..engine import run as run_loop
    from ..instruments import INSTRUMENTS, Every

    rc = RunConfig.from_dict({**run_fields(cfg), "steps": auto_steps(cfg), "dtype": "float64"})
    when = Every(rc.eval_every, last=rc.steps)
    names = cfg.get("instruments", ("excess_risk", "dist2"))
    return run_loop(rc, instruments=[INSTRUMENTS.get(name).obj(when) for name in names])


# ------------------------------------------------------------------ stationary values
def stationary(cfg: Mapping[str, Any], quantity: str) -> Outcome:
    """The stationary value of `quantity` with its complete SE (chains and evaluation sample, DESIGN
    2.9) and per-quantity stationarity (drift by batch means and relaxation of the slow modes)."""
    r = run(cfg)
    e = r.summary()["quantities"][quantity]
    info = {"se_chains": e["se_chains"], "se_eval": e["se_eval"], "eval_error": e["eval_error"], "drift": e["drift"],
            "drift_se": e["drift_se"], "steps": int(r.config["steps"]), "window": e["window"],
            "diverged_chains": r.diverged_chains, "stationary_reason": e["stationary_reason"]}
    return Outcome(float(e["value"]), float(e["se"]), stationary=e["stationary"], reason=e["stationary_reason"], info=info)


def prediction(cfg: Mapping[str, Any], quantity: str, **info: Any) -> Outcome:
    """One quantity of `theory(cfg)` as an Outcome (value, SE, method); ValueError when absent."""
    pred = theory(cfg)
    e = pred.values.get(quantity)
    if e is None:
        raise ValueError(f"{quantity} is not predicted for this configuration: {'; '.join(pred.notes)}")
    return Outcome(float(e.value), float(e.se), info={"method": e.method, "integration": pred.integration, **info})


# ------------------------------------------------------------------ F - F* of given parameters
EVAL_MC = 2**16  # fresh inputs for F - F* where the task has no exact quadrature points


def expected_kl(cfg: Mapping[str, Any], theta: torch.Tensor) -> tuple[np.ndarray, float, str]:
    """F(theta_r) - F* = E_x KL(p || q_theta_r) for parameters `[R, P]`: (values `[R]`, the SE of
    their mean from the evaluation inputs, how). Exact on the task's quadrature points where they
    are points (DESIGN 2.9 (a)); else EVAL_MC fresh inputs shared by the rows, with their added
    variance term (2.9 (c)): the SD over the inputs of the row-averaged KL, over sqrt(EVAL_MC)."""
    from ..losses import kl_divergence
    from ..theory.integrate import quadrature

    task, student, _ = objects(cfg)
    quad = quadrature(task)
    if quad is not None and quad.nodes.exact:
        x, p, w, how = quad.nodes.x, quad.nodes.p, quad.nodes.w, "exact E_x (quadrature points)"
    else:
        x, _ = task.sample(EVAL_MC, rng_mod.stream(int(cfg["seed"]), "claims", 1))
        p, w, how = task.bcp(x), np.full(EVAL_MC, 1.0 / EVAL_MC), f"added variance term over {EVAL_MC} shared fresh inputs"
    xt, log_p = torch.from_numpy(x), torch.from_numpy(np.log(np.maximum(p, 1e-300)))
    kl = torch.stack([kl_divergence(log_p, student.log_probs(theta[r:r + 1], xt[None]))[0] for r in range(len(theta))])
    kl = kl.numpy()
    se = 0.0 if how.startswith("exact") else float(kl.mean(0).std(ddof=1) / math.sqrt(len(w)))
    return kl @ w, se, how


# ------------------------------------------------------------------ bound curves (T1-T4)
def recorded_steps(cfg: Mapping[str, Any]) -> np.ndarray:
    """The steps `Every(eval_every, last=steps)` records `[T]`."""
    steps, every = auto_steps(cfg), int(cfg["eval_every"])
    return np.unique(np.r_[np.arange(0, steps + 1, every), steps])


@memo
def initial_gap(cfg: Mapping[str, Any]) -> tuple[float, float, float]:
    """(d0, e0, SE of e0): the means over the run's own initial points of ||theta_0 - theta*||^2 and
    F(theta_0) - F* (`expected_kl`; the theorems bound E[. | theta_0]). Chain r's theta_0 is rebuilt
    from `rng.chain_streams(seed, r)`, the loop's layout."""
    task, student, _ = objects(cfg)
    R = int(cfg["chains"])
    theta0 = student.init_params(cfg["init"], R, task, [rng_mod.chain_streams(cfg["seed"], r) for r in range(R)],
                                 float(cfg["init_scale"]))
    kl, se, _ = expected_kl(cfg, theta0)
    d0 = float(((theta0 - student.optimum(task)) ** 2).sum(-1).mean())
    return d0, max(float(kl.mean()), 0.0), se  # KL >= 0: a negative mean is rounding (theta_0 = theta*)


def bound_constants(cfg: Mapping[str, Any]) -> Any:
    """`bounds.Constants` of a configuration: mu and L local over the ball of `cfg["radius"]` around
    theta* (DESIGN 2.6), calL (E12) and sigma^2 (E4) from `theory`; plus the `LocalConstants`."""
    from ..theory.bounds import Constants
    from ..theory.constants import local_constants

    task, student, _ = objects(cfg)
    pred = theory(cfg)
    loc = local_constants(task, student, radius=float(cfg["radius"]), seed=int(cfg["seed"]))
    return Constants(mu=loc.mu, calL=pred.calL.value, L=loc.L, sigma2=pred.sigma2.value), loc


def bound_curve(cfg: Mapping[str, Any]) -> Outcome:
    """The bound curve of `cfg["theorem"]` (T1-T4) at the recorded steps, from the run's initial
    gap, with the local mu and L over the ball of `cfg["radius"]` (DESIGN 2.6) and calL (E12);
    vacuous when its transient term dominates it at the end yet has decayed by less than
    VACUOUS_DECAY over the run (the bound then only says "no larger than at the start")."""
    from ..theory.bounds import theorem

    th = theorem(cfg["theorem"])
    c, loc = bound_constants(cfg)
    d0, e0, e0_se = initial_gap(cfg)
    k = recorded_steps(cfg)
    b = th.curve(float(cfg["gamma"]), c, d0 if th.quantity == "dist2" else e0, k)
    se = b.rate ** k.astype(float) * (e0_se if th.quantity == "excess_risk" else 0.0)
    start = d0 if th.quantity == "dist2" else e0
    vacuous = 1.0 - b.contraction < VACUOUS_DECAY and b.contraction * start > b.neighborhood
    info = {"mu_local": loc.mu, "L_local": loc.L, "kappa_local": loc.kappa, "calL": c.calL, "gamma_max": b.gamma_max,
            "bound_neighborhood": b.neighborhood, "contraction": b.contraction, "region": loc.region}
    reason = f"(1 - gamma mu)^k = {b.contraction:.6f} at the last k: the bound decays by < {VACUOUS_DECAY:.0%}" if vacuous else ""
    return Outcome(float(b.values[-1]), float(se[-1]), k=k, curve=b.values, curve_se=se, vacuous=vacuous, reason=reason,
                   info=info)


def measured_curve(cfg: Mapping[str, Any], quantity: str) -> Outcome:
    """Mean over chains of `quantity` at every recorded step, with the SE across chains combined
    with the evaluation-sample error at that step (DESIGN 2.9)."""
    r = run(cfg)
    k, v = r.values(quantity)
    m, se, _ = mean_se(np.where(np.isfinite(v), v, np.nan), axis=1)
    if quantity in r.points:
        _, pts = r.points[quantity]
        se = np.hypot(se, np.nanstd(pts, axis=1, ddof=1) / math.sqrt(pts.shape[1]))
    max_dist = float(np.sqrt(np.nanmax(r.values("dist2")[1]))) if "dist2" in r.records else math.nan
    info = {"max_distance_visited": max_dist, "diverged_chains": r.diverged_chains}
    if "radius" in cfg and max_dist > cfg["radius"]:
        info["note"] = "the run left the ball on which mu and L were estimated"
    return Outcome(float(m[-1]), float(se[-1]), k=np.asarray(k), curve=m, curve_se=se, info=info)


# ------------------------------------------------------------------ finite-n training (E18)
def _training_sets(cfg: Mapping[str, Any], teacher: Any, task: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Replica r's n inputs and frozen targets from `rng.chain_streams(seed, r)` (the engine's layout)."""
    from ..teachers import TargetSource

    xs, ts = [], []
    n = int(cfg["n"])
    for r in range(int(cfg["chains"])):
        s = rng_mod.chain_streams(cfg["seed"], r)
        x, y = task.sample(n, s.data)
        xs.append(x)
        ts.append(TargetSource(teacher, task.bcp(x), y, "frozen", s.teacher, x=x)(np.arange(n), s.teacher))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ts))


@memo
def finite_n(cfg: Mapping[str, Any]) -> Outcome:
    """Excess risk F(theta_n) - F* of the empirical minimiser on n points with frozen targets, over
    independent replicas (`chains`), with the SE across replicas and the evaluation error
    (`expected_kl`).

    Each replica is trained to max gradient norm <= grad_tol by full-batch Newton steps from theta*
    with the pseudo-inverse of the Hessian at theta* (within O(n^-1/2) of the empirical one: linear
    convergence).
    """
    task, student, teacher = objects(cfg)
    X, T = _training_sets(cfg, teacher, task)
    Hinv = torch.linalg.pinv(torch.from_numpy(theory(cfg).H), hermitian=True)
    theta = student.optimum(task).expand(X.shape[0], -1).clone()
    for _ in range(int(cfg.get("newton_steps", 12))):
        theta = theta - student.batch_grad(theta, X, T) @ Hinv
    grad = float(student.batch_grad(theta, X, T).norm(dim=-1).max())
    if not grad <= float(cfg.get("grad_tol", 1e-7)):
        raise ValueError(f"training did not converge: max gradient norm {grad:.3g} after {cfg.get('newton_steps', 12)} Newton steps")
    kl, se_e, how = expected_kl(cfg, theta)
    value, se_r, R = mean_se(kl)
    info = {"max_grad_norm": grad, "replicas": R, "se_replicas": se_r, "se_eval": se_e, "eval_error": how}
    return Outcome(value, math.hypot(se_r, se_e), info=info)


# ------------------------------------------------------------------ growth rates and convergence thresholds
def tail_slopes(k: np.ndarray, values: np.ndarray, *, floor: float = 1e-24, ceiling: float = math.inf) -> np.ndarray:
    """Per chain, the least-squares slope of log(values) on k over the last half of the records
    where every value is within (floor, ceiling) `[R]` (per step; NaN when fewer than 3 records)."""
    k = np.asarray(k, dtype=np.float64)
    half = k >= k[-1] / 2
    out = np.full(values.shape[1], np.nan)
    for c in range(values.shape[1]):
        v = values[:, c]
        ok = half & np.isfinite(v) & (v > floor) & (v < ceiling)
        if ok.sum() >= 3:
            out[c] = np.polyfit(k[ok], np.log(v[ok]), 1)[0]
    return out


def convergence(cfg: Mapping[str, Any], quantity: str = "excess_risk") -> Outcome:
    """Does SGD converge (DESIGN 2.9)? value: the mean tail slope of log `quantity` per step (SE
    across chains); `info["converges"]`: the slope is negative beyond Z SE, or every chain fell to
    CONVERGED_FRACTION of its start, with no chain diverged."""
    r = run(cfg)
    k, v = r.values(quantity)
    ratio = v[-1] / v[0]
    slopes = tail_slopes(k, v, floor=1e-300)
    slope, se, _ = mean_se(slopes)
    reached = bool(np.all(np.isfinite(ratio) & (ratio <= CONVERGED_FRACTION)))
    diverged = r.diverged_chains
    converges = diverged == 0 and (reached or (math.isfinite(se) and slope < -Z * se))
    info = {"converges": converges, "reached_fraction": reached, "final_over_initial": float(np.nanmedian(ratio)),
            "diverged_chains": diverged, "first_divergence": int(np.max(r.diverged_step))}
    return Outcome(float(slope) if diverged == 0 else math.inf, float(se) if diverged == 0 else 0.0, info=info)


def largest_convergent(cfg: Mapping[str, Any], gammas: Sequence[float], quantity: str = "excess_risk") -> Outcome:
    """The largest gamma of the grid at which SGD converges (`convergence`), with the next grid
    point (where it does not) as the bracket; the grid must start convergent."""
    results = [convergence({**cfg, "gamma": float(g)}, quantity) for g in gammas]
    ok = [o.info["converges"] for o in results]
    if not ok[0]:
        raise ValueError(f"gammas: SGD does not converge at the smallest gamma {gammas[0]:g}")
    i = len(ok) - 1 - ok[::-1].index(True)
    hi = float(gammas[i + 1]) if i + 1 < len(gammas) else math.inf
    return Outcome(float(gammas[i]), 0.0, info={"bracket": [float(gammas[i]), hi], "converges": ok,
                                                 "slopes": [o.value for o in results], "slopes_se": [o.se for o in results]})


def growth_threshold(cfg: Mapping[str, Any], gammas: Sequence[float]) -> Outcome:
    """Where the growth rate of ||theta_k - theta*|| of SGD started near theta* changes sign (E19).

    Per gamma and chain: half the tail slope of log d2 while 1e-24 < d2 < 1e-2 (the linear regime,
    above rounding); mean and SE across chains; the zero by linear interpolation between the
    bracketing grid points, its SE by the delta method (the larger SE of the two / the slope).
    """
    rates, ses = [], []
    for g in gammas:
        k, d2 = run({**cfg, "gamma": float(g), "instruments": ("dist2",)}).values("dist2")
        m, s, _ = mean_se(tail_slopes(k, d2, floor=1e-24, ceiling=1e-2) / 2)
        rates.append(float(m))
        ses.append(float(s))
    gs = [float(g) for g in gammas]
    cross = [i for i in range(1, len(gs)) if rates[i - 1] < 0 <= rates[i]]
    if not cross:
        raise ValueError(f"gammas: the growth rate does not change sign on {gs} (rates {np.round(rates, 4).tolist()})")
    i = cross[0]
    slope = (rates[i] - rates[i - 1]) / (gs[i] - gs[i - 1])
    root = gs[i - 1] - rates[i - 1] / slope
    return Outcome(root, max(ses[i - 1], ses[i]) / slope,
                   info={"largest_convergent_gamma_on_grid": gs[i - 1], "growth_rates": rates, "growth_rates_se": ses})
