"""The claims of DESIGN 2.3-2.8 checked by the THEOREMS registry: predictions, measurements, configurations.

Each claim pairs `predict(config)` (the theory API of this package) with `measure(config)` (the
instrumented SGD loop, or a direct Monte Carlo through the student API and the instruments), both
returning an `Outcome`, and a verdict rule (`verdicts`); `CLAIMS` lists them in registry order and
`registry.THEOREMS` indexes them by id. Seeds are fixed, so records are deterministic. The defaults
are on the well-conditioned `triangle` task with the linear pinned-gauge student in float64. T2/T4
run there too: on the `teacher-net` task with its MLP student kappa is ~1e6, the admissible step
sizes are ~1e-8 and the bounds would stay flat over any affordable run. Constants of T1-T4 (mu, L)
are the local ones over a stated ball around theta* (`constants.local_constants`, DESIGN 2.6), calL
is E12 on 10^4 draws; the bounds start from the run's own initial points (the theorems bound
E[. | theta_0]).
"""
from __future__ import annotations

import dataclasses
import math
from functools import lru_cache
from typing import Any, Mapping

import numpy as np
import torch

from .. import rng as rng_mod
from ..teachers import TargetSource
from .verdicts import Below, Claim, Equal, Outcome, Zero

__all__ = ["CLAIMS"]




# ------------------------------------------------------------------ shared helpers
@lru_cache(maxsize=16)
def _objects(task: str, student: str, gauge: str, teacher: str) -> tuple[Any, Any, Any]:
    from ..engine import build

    s = build(task=task, student=student, gauge=gauge, teacher=teacher, dtype="float64")
    return s.task, s.student, s.base_teacher


def _objs(cfg: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return _objects(cfg["task"], cfg.get("student", "linear"), cfg.get("gauge", "pinned"), cfg["teacher"])


@lru_cache(maxsize=32)
def _theory_cached(task: str, student: str, gauge: str, teacher: str, gamma: float, n: int | None, seed: int) -> Any:
    from .report import predict

    t, s, te = _objects(task, student, gauge, teacher)
    return predict(t, s, te, gamma=gamma, n=n, seed=seed)


def _theory(cfg: Mapping[str, Any], n: int | None = None) -> Any:
    """`report.predict` for the claim's configuration (gamma, when absent, enters none of the numbers used)."""
    return _theory_cached(cfg["task"], cfg.get("student", "linear"), cfg.get("gauge", "pinned"), cfg["teacher"],
                          float(cfg.get("gamma", 1.0)), n, int(cfg["seed"]))


def _mean_se(v: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SE over `axis`, ignoring non-finite entries (diverged chains)."""
    v = np.where(np.isfinite(v), v, np.nan)
    n = np.sum(np.isfinite(v), axis=axis)
    return np.nanmean(v, axis=axis), np.nanstd(v, axis=axis, ddof=1) / np.sqrt(n)


def _run(cfg: Mapping[str, Any], risk: bool = True, **over: Any) -> Any:
    """The instrumented loop with the Distance (and ExcessRisk) instruments every `eval_every` steps."""
    from ..engine import RunConfig, run
    from ..instruments import Distance, Every, ExcessRisk

    keys = {f.name for f in dataclasses.fields(RunConfig)}
    rc = RunConfig.from_dict({**{k: v for k, v in cfg.items() if k in keys}, **over})
    when = Every(rc.eval_every, last=rc.steps)
    return run(rc, instruments=[Distance(when)] + ([ExcessRisk(when)] if risk else []))


def _perturbed(student: Any, task: Any, scale: float, M: int, rng: np.random.Generator) -> torch.Tensor:
    """M parameter vectors theta* + scale N(0, I) `[M, P]`."""
    return student.optimum(task)[None] + scale * torch.from_numpy(rng.standard_normal((M, student.num_params)))


def _recorded(cfg: Mapping[str, Any]) -> np.ndarray:
    """The steps `Every(eval_every, last=steps)` records `[T]`."""
    return np.unique(np.r_[np.arange(0, cfg["steps"] + 1, cfg["eval_every"]), cfg["steps"]])


# ------------------------------------------------------------------ P1, P2, P3 (Monte Carlo)
def _zero(cfg: Mapping[str, Any]) -> Outcome:
    return Outcome(0.0, 0.0)


def _measure_p1(cfg: Mapping[str, Any]) -> Outcome:
    """F_onehot(theta) - F_bcp(theta) at random theta, paired on the same (x, y) (E1, E2)."""
    from ..losses import cross_entropy

    task, student, _ = _objs(cfg)
    rng = rng_mod.stream(cfg["seed"], "claims", 1)
    R, n, K = cfg["thetas"], cfg["n"], task.num_classes
    theta = _perturbed(student, task, cfg["theta_scale"], R, rng)
    x, y = task.sample(R * n, rng)
    log_q = student.log_probs(theta, torch.from_numpy(x).reshape(R, n, -1))
    onehot = torch.from_numpy(np.eye(K)[y].reshape(R, n, K))
    diff = (cross_entropy(onehot, log_q) - cross_entropy(torch.from_numpy(task.bcp(x)).reshape(R, n, K), log_q)).numpy()
    m, se = _mean_se(diff)
    return Outcome(float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(diff.size)),
                   info={"max_abs_z_per_theta": float(np.max(np.abs(m / se))), "thetas": R})


def _measure_p2(cfg: Mapping[str, Any]) -> Outcome:
    """max_i ||grad l(theta*; x_i, p(x_i))|| from the student's per-sample gradients (float64)."""
    task, student, teacher = _objs(cfg)
    x, y = task.sample(cfg["n"], rng_mod.stream(cfg["seed"], "claims", 2))
    t = teacher.sample(task.bcp(x), y, rng_mod.stream(cfg["seed"], "claims", 2, 1))
    g = student.per_sample_grads(student.optimum(task)[None], torch.from_numpy(x)[None], torch.from_numpy(t)[None])[0]
    norms = g.norm(dim=-1).numpy()
    return Outcome(float(norms.max()), 0.0, info={"rms_grad_norm": float(np.sqrt(np.mean(norms**2))), "n": len(norms)})


def _predict_p3(cfg: Mapping[str, Any]) -> Outcome:
    """sigma_T^2 by the closed forms E6-E8 (E11 factors of the linear student), Monte Carlo over x."""
    from .predictions import sigma2_closed_form

    task, student, teacher = _objs(cfg)
    e = sigma2_closed_form(task, student, teacher, n_mc=cfg["n_mc"], seed=cfg["seed"])
    return Outcome(e.value, e.se, info={"closed_form": e.method})


def _measure_p3(cfg: Mapping[str, Any]) -> Outcome:
    """E||grad l(theta*; x, t)||^2 from per-sample gradients with sampled targets (instrument function)."""
    from ..instruments import sigma2_at_optimum

    task, student, teacher = _objs(cfg)
    e = sigma2_at_optimum(student, task, teacher, cfg["n"], rng_mod.stream(cfg["seed"], "claims", 3))
    return Outcome(e.value, e.se)


# ------------------------------------------------------------------ T1-T4 (bounds on SGD runs)
def _initial_gap(cfg: Mapping[str, Any]) -> tuple[float, float, float]:
    """(d0, e0, SE of e0): mean over the run's own initial points of ||theta_0 - theta*||^2 and F(theta_0) - F*.

    The theorems bound E[. | theta_0]; chain r's theta_0 comes from `rng.chain_streams(seed, r)` (the
    loop's layout), so `student.init_params` reproduces it. F - F* is the mean KL over 8192 fresh
    inputs (SE over the inputs).
    """
    from ..losses import kl_divergence

    task, student, _ = _objs(cfg)
    R, n = cfg["chains"], 8192
    theta0 = student.init_params(cfg["init"], R, task, [rng_mod.chain_streams(cfg["seed"], r) for r in range(R)],
                                 cfg["init_scale"])
    x, _ = task.sample(n, rng_mod.stream(cfg["seed"], "claims", 4))
    log_q = student.log_probs(theta0, torch.from_numpy(x).expand(R, n, -1))
    kl = kl_divergence(torch.from_numpy(task.log_bcp(x)), log_q).mean(0).numpy()  # mean over chains, per input
    d0 = float(((theta0 - student.optimum(task)) ** 2).sum(-1).mean())
    return d0, float(kl.mean()), float(kl.std(ddof=1) / math.sqrt(n))


def _predict_bound(cfg: Mapping[str, Any]) -> Outcome:
    """The bound curve of cfg["theorem"] at the recorded k, with local mu, L over the stated ball."""
    from . import bounds
    from .constants import local_constants

    task, student, _ = _objs(cfg)
    pred = _theory(cfg)
    loc = local_constants(task, student, radius=cfg["radius"], seed=cfg["seed"])
    k, th, gamma = _recorded(cfg), cfg["theorem"], float(cfg["gamma"])
    d0, e0, e0_se = _initial_gap(cfg)
    kw = dict(mu=loc.mu, calL=pred.calL, k=k)
    if th == "T1":
        b = bounds.bound_t1(gamma, dist0=d0, **kw)
    elif th == "T3":
        b = bounds.bound_t3(gamma, sigma2=pred.sigma2.value, dist0=d0, **kw)
    elif th == "T2":
        b = bounds.bound_t2(gamma, L=loc.L, gap0=e0, **kw)
    else:
        b = bounds.bound_t4(gamma, L=loc.L, sigma2=pred.sigma2.value, gap0=e0, **kw)
    se = (b.rate ** k.astype(float) * e0_se) if th in ("T2", "T4") else np.zeros(len(k))
    info = {"mu_local": loc.mu, "L_local": loc.L, "kappa_local": loc.kappa, "calL": pred.calL, "gamma_max": b.gamma_max,
            "bound_neighborhood": b.neighborhood, "region": loc.region}
    return Outcome(float(b.values[-1]), float(se[-1]), k=k, curve=b.values, curve_se=se, info=info)


def _measure_curve(cfg: Mapping[str, Any]) -> Outcome:
    """Mean over chains of cfg["quantity"] at every recorded k, SE across chains."""
    run = _run(cfg)
    k, v = run.values(cfg["quantity"])
    m, se = _mean_se(v, axis=1)
    max_dist = float(np.sqrt(np.nanmax(run.values("dist2")[1])))
    info = {"max_distance_visited": max_dist, "diverged_chains": run.diverged_chains}
    if "radius" in cfg and max_dist > cfg["radius"]:
        info["note"] = "the run left the ball on which mu and L were estimated"
    return Outcome(float(m[-1]), float(se[-1]), k=np.asarray(k), curve=m, curve_se=se, info=info)


# ------------------------------------------------------------------ E17, E18, E19
def _predict_e17(cfg: Mapping[str, Any]) -> Outcome:
    pred = _theory(cfg)
    g, b = float(cfg["gamma"]), int(cfg.get("batch", 1))
    return Outcome(pred.neighborhood_excess_risk, g * pred.sigma2.se / (4 * b),
                   info={"sigma2": pred.sigma2.value, "E17_next_order": pred.neighborhood_excess_risk_corrected})


def _measure_stationary(cfg: Mapping[str, Any]) -> Outcome:
    """Stationary excess risk: per-chain time average over the last half, SE across chains (DESIGN 2.9)."""
    q = _run(cfg).summary()["quantities"]["excess_risk"]
    return Outcome(q["value"], q["se"], info={"stationary": q["stationary"], "drift": q["drift"], "drift_se": q["drift_se"]})


def _predict_e18(cfg: Mapping[str, Any]) -> Outcome:
    pred = _theory(cfg, n=int(cfg["n"]))
    return Outcome(pred.finite_n_excess_risk, 0.0, info={"finite_n_dist2": pred.finite_n_dist2, "num_params": pred.num_params})


def _measure_e18(cfg: Mapping[str, Any]) -> Outcome:
    """Excess risk of the empirical minimiser on n points with frozen targets; replicas are independent.

    Replica r draws its training set and frozen targets from `rng.chain_streams(seed, r)` (the engine's
    layout) and is trained to convergence (max gradient norm <= grad_tol: the excess-risk error is then
    ~ grad_tol ||H (theta_n - theta*)|| / mu) by full-batch Newton steps from theta* with the student's
    Hessian at theta* (within O(n^-1/2) of the empirical one: fast linear convergence). F - F* = mean
    KL(p || q) on a fresh sample.
    """
    from ..losses import kl_divergence

    task, student, teacher = _objs(cfg)
    R, n = cfg["chains"], cfg["n"]
    xs, ts = [], []
    for r in range(R):
        s = rng_mod.chain_streams(cfg["seed"], r)
        x, y = task.sample(n, s.data)
        xs.append(x)
        ts.append(TargetSource(teacher, task.bcp(x), y, cfg["noise"], s.teacher, x=x)(np.arange(n), s.teacher))
    X, T = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ts))
    star = student.optimum(task)
    xh, _ = task.sample(4096, rng_mod.stream(cfg["seed"], "claims", 5))
    Hinv = torch.linalg.inv(student.hessian(star, torch.from_numpy(xh), torch.from_numpy(task.bcp(xh))))
    theta = star.expand(R, -1).clone()
    for _ in range(cfg["newton_steps"]):  # Newton steps with the Hessian at theta* (linear convergence)
        theta = theta - student.batch_grad(theta, X, T) @ Hinv
    grad = float(student.batch_grad(theta, X, T).norm(dim=-1).max())
    if not grad <= cfg["grad_tol"]:
        raise ValueError(f"training did not converge: max gradient norm {grad:.3g} after {cfg['newton_steps']} steps")
    xe, _ = task.sample(cfg["eval_n"], rng_mod.stream(cfg["seed"], "claims", 6))
    log_q = student.log_probs(theta, torch.from_numpy(xe).expand(R, -1, -1))
    kl = kl_divergence(torch.from_numpy(task.log_bcp(xe)), log_q).mean(-1).numpy()
    return Outcome(float(kl.mean()), float(kl.std(ddof=1) / math.sqrt(R)), info={"max_grad_norm": grad})


def _predict_e19(cfg: Mapping[str, Any]) -> Outcome:
    from .lyapunov import lyapunov_threshold

    task, student, _ = _objs(cfg)
    calL = _theory(cfg).calL
    th = lyapunov_threshold(task, student, gamma_range=(0.5 / calL, 500.0 / calL), steps=cfg["lyapunov_steps"], seed=cfg["seed"])
    return Outcome(th.gamma.value, th.gamma.se, info={"lyapunov_bracket": list(th.bracket), "one_over_calL": 1.0 / calL})


def _measure_e19(cfg: Mapping[str, Any]) -> Outcome:
    """Where the growth rate of ||theta_k - theta*|| of bcp SGD started near theta* changes sign.

    Per gamma of the grid and per chain: (log d2(k_end) - log d2(burn)) / (2 (k_end - burn)), k_end the
    last record before d2 leaves (1e-24, 1e-2) (linear regime, above rounding); mean and SE across
    chains; the zero by linear interpolation, its SE by the delta method (SE of the rate / slope).
    """
    rates, ses = [], []
    for g in cfg["gammas"]:
        k, d2 = _run(cfg, risk=False, gamma=g).values("dist2")
        start = int(np.searchsorted(k, cfg["burn"]))
        linear = np.isfinite(d2) & (d2 < 1e-2) & (d2 > 1e-24)  # away from the nonlinear region and rounding
        r = []
        for c in range(d2.shape[1]):
            bad = np.nonzero(~linear[start:, c])[0]
            end = start + (bad[0] - 1 if len(bad) else len(k) - 1 - start)
            r.append((np.log(d2[end, c]) - np.log(d2[start, c])) / (2 * (k[end] - k[start])) if end > start else np.nan)
        m, s = _mean_se(np.asarray(r))
        rates.append(float(m))
        ses.append(float(s))
    gs = list(cfg["gammas"])
    cross = [i for i in range(1, len(gs)) if rates[i - 1] < 0 <= rates[i]]
    if not cross:
        raise ValueError(f"the SGD growth rate does not change sign on gammas={gs} (rates {np.round(rates, 4).tolist()})")
    i = cross[0]
    slope = (rates[i] - rates[i - 1]) / (gs[i] - gs[i - 1])
    root = gs[i - 1] - rates[i - 1] / slope
    return Outcome(root, max(ses[i - 1], ses[i]) / slope,
                   info={"largest_convergent_gamma_on_grid": gs[i - 1], "growth_rates": rates, "growth_rates_se": ses})


# ------------------------------------------------------------------ the registry
_TRI = {"task": "triangle", "student": "linear", "gauge": "pinned", "seed": 0}
_RUN = {**_TRI, "dtype": "float64", "init": "perturbed", "eval_n": 2000}
_BOUND = {**_RUN, "init_scale": 0.3, "radius": 1.5, "chains": 64, "steps": 3000, "eval_every": 100}


def _p3(teacher: str, tag: str) -> Claim:
    return Claim(f"P3-{teacher.split(':')[0]}",
                 f"sigma^2 of {teacher} targets at theta* equals its closed form ({tag})", ("E4", tag),
                 {**_TRI, "teacher": teacher, "n_mc": 16384, "n": 32768}, _predict_p3, _measure_p3, Equal(), quick=True)


def _bound(th: str, teacher: str, gamma: float, quantity: str, tag: str, form: str, **over: Any) -> Claim:
    return Claim(th, f"{teacher} SGD: {form} at every recorded k ({tag})", (tag,),
                 {**_BOUND, "teacher": teacher, "gamma": gamma, "theorem": th, "quantity": quantity, **over},
                 _predict_bound, _measure_curve, Below())


CLAIMS: list[Claim] = [
    Claim("P1", "onehot and bcp targets give the same risk F(theta) at random theta (Prop. 1)", ("E2",),
          {**_TRI, "teacher": "onehot", "thetas": 8, "theta_scale": 1.0, "n": 8192}, _zero, _measure_p1, Equal(), quick=True),
    Claim("P2", "bcp targets: every per-sample gradient vanishes at theta* (Prop. 2)", ("Prop. 2", "E3"),
          {**_TRI, "teacher": "bcp", "n": 10000}, _zero, _measure_p2, Zero(1e-12), quick=True),
    _p3("onehot", "E6"),
    _p3("dirichlet:5", "E8"),
    _p3("additive:0.01", "E7"),
    _bound("T1", "bcp", 0.05, "dist2", "E13", "E||theta_k - theta*||^2 <= (1 - gamma mu)^k d0"),
    _bound("T2", "bcp", 0.001, "excess_risk", "E14", "E[F_k - F*] <= (1 - gamma mu)^k e0"),
    _bound("T3", "onehot", 0.025, "dist2", "E15", "E||theta_k - theta*||^2 <= (1 - gamma mu)^k d0 + 2 gamma sigma^2/mu"),
    _bound("T4", "onehot", 0.0005, "excess_risk", "E16", "E[F_k - F*] <= (1 - gamma mu)^k e0 + L gamma sigma^2/mu",
           steps=6000, eval_every=200),
    # init_scale sqrt(gamma/2): for onehot C = H, so the E17' law is S = gamma I / 2 (start near stationarity)
    Claim("E17", "stationary E[F - F*] = gamma sigma^2 / (4b) at small gamma (within 10 %)", ("E17",),
          {**_RUN, "teacher": "onehot", "gamma": 0.05, "init_scale": 0.158, "chains": 64, "steps": 4000,
           "eval_every": 50, "eval_n": 4000}, _predict_e17, _measure_stationary, Equal(rtol=0.10)),
    Claim("E18", "frozen onehot labels, n points: excess risk of the minimiser = tr(H^-1 C)/(2n) (within 15 %)", ("E18",),
          {**_TRI, "teacher": "onehot", "n": 5000, "noise": "frozen", "chains": 128, "newton_steps": 12, "grad_tol": 1e-7,
           "eval_n": 20000}, _predict_e18, _measure_e18, Equal(rtol=0.15)),
    Claim("E19", "bcp SGD converges up to the sign change of the top Lyapunov exponent (within 10 %)", ("E19",),
          {**_RUN, "teacher": "bcp", "gammas": (2.0, 2.5, 3.0, 3.5, 4.0), "init_scale": 1e-4,
           "chains": 64, "steps": 1000, "burn": 100, "eval_every": 10, "lyapunov_steps": 2000},
          _predict_e19, _measure_e19, Equal(rtol=0.10)),
]
