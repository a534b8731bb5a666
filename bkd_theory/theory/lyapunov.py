"""E19: the step-size threshold of bcp-target SGD from the top Lyapunov exponent (DESIGN 2.8).

With bcp targets every per-sample gradient vanishes at theta* (Prop. 2), so SGD linearised at
theta* is the random product delta_k = prod_{i<=k} (I - gamma A_i) delta_0 with A_i the mean over
a batch of per-sample Hessians H_x = U U^T (`predictions.hessian_factors`). Its top Lyapunov
exponent lambda(gamma) = lim (1/k) log ||delta_k|| decides almost-sure local convergence; the
threshold is the gamma where lambda changes sign.

Estimation: renormalised vector iteration (one vector per replica, renormalised every step, the
log-norms summed after a burn-in), on fresh inputs from the task, vectorised over a grid of gamma
with common random numbers (every gamma sees the same inputs), with the SE across independent
replicas. In the full gauge the iteration is kept on the range of H (the gauge direction has
exponent 0 for every gamma). The threshold is bracketed on a log grid, refined on a linear grid
inside the bracket and located by linear interpolation of the fixed-seed estimate; its SE is the
exponent's SE divided by the slope there (delta method).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from synthetic import validation
from synthetic.base import Estimate

from .. import rng as rng_mod
from ..stats import mean_se
from .constants import null_basis
from .integrate import Nodes
from .predictions import model, theta_star

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..students import Student

@dataclass(frozen=True)
class LyapunovExponents:
    """Top Lyapunov exponents per step on a gamma grid.

    Attributes:
        gammas: `[G]`. exponents: mean over replicas `[G]`. se: SE across replicas `[G]`.
        steps, burn, replicas, batch, seed: the simulation's settings.
    """

    gammas: np.ndarray
    exponents: np.ndarray
    se: np.ndarray
    steps: int
    burn: int
    replicas: int
    batch: int
    seed: int


def top_lyapunov_exponents(task: "Task", student: "Student", gammas: np.ndarray, *, batch: int = 1, steps: int = 4000,
                           replicas: int = 8, burn: int | None = None, seed: int = 0,
                           budget_bytes: int = 64 * 2**20) -> LyapunovExponents:
    """Estimate lambda(gamma) for each gamma of the grid `[G]` (common random numbers).

    Args:
        gammas: step sizes (> 0). batch: b. steps: iterations per replica. replicas: independent
            input streams (`rng.stream(seed, "theory.lyapunov", r)`). burn: steps discarded before
            averaging the log-growth (default steps // 5). budget_bytes: memory for the per-sample
            Hessian factors of one block of steps (inputs are drawn and factored block by block).
    """
    g = np.atleast_1d(validation.finite_array("gammas", gammas, ndim=None)).astype(np.float64).reshape(-1)
    if np.any(g <= 0):
        raise ValueError("gammas must all be > 0")
    b = validation.positive_int("batch", batch)
    steps = validation.positive_int("steps", steps, minimum=2)
    R = validation.positive_int("replicas", replicas, minimum=2)
    burn = steps // 5 if burn is None else validation.positive_int("burn", burn, minimum=0)
    if burn >= steps:
        raise ValueError(f"burn must be in [0, steps={steps}), got {burn}")
    theta = theta_star(task, student)
    P = student.num_params
    null = null_basis(student)
    rngs = [rng_mod.stream(seed, "theory.lyapunov", r) for r in range(R)]
    v0 = rng_mod.stream(seed, "theory.lyapunov", R).standard_normal((R, P))
    v0 -= (v0 @ null) @ null.T
    v = np.broadcast_to(v0 / np.linalg.norm(v0, axis=1, keepdims=True), (len(g), R, P)).copy()
    logs = np.zeros((len(g), R))
    block = max(1, int(budget_bytes) // (8 * R * b * P * task.num_classes))
    for start in range(0, steps, block):
        m = min(block, steps - start)
        xs = [task.sample(m * b, rng)[0] for rng in rngs]
        x = np.concatenate(xs)
        p = np.exp(task.log_bcp(x))
        U = model(task, student, Nodes(x, p, np.full(len(x), 1.0 / len(x)), None, "replica inputs"), theta=theta).factors()
        U = U.reshape(R, m, b, P, -1)
        for i in range(m):
            Ui = U[:, i]  # [R, b, P, K]
            w = np.einsum("rbpk,grp->grbk", Ui, v)
            v = v - g[:, None, None] * np.einsum("rbpk,grbk->grp", Ui, w) / b
            if null.shape[1]:
                v -= (v @ null) @ null.T
            nrm = np.linalg.norm(v, axis=2)
            if start + i >= burn:
                logs += np.log(nrm)
            v /= nrm[..., None]
    per = logs / (steps - burn)
    mean, se, _ = mean_se(per, axis=1)
    return LyapunovExponents(g, mean, se, steps, burn, R, b, seed)


@dataclass(frozen=True)
class LyapunovThreshold:
    """The gamma where the fixed-seed estimate of lambda(gamma) changes sign (E19).

    Attributes:
        gamma: the threshold with its delta-method SE. bracket: (lo, hi) with lambda(lo) < 0 < lambda(hi).
        coarse, fine: the two grid passes. method: a sentence.
    """

    gamma: Estimate
    bracket: tuple[float, float]
    coarse: LyapunovExponents = field(repr=False)
    fine: LyapunovExponents = field(repr=False)
    method: str = ""


def _sign_change(ex: LyapunovExponents) -> int:
    """Index i of the first grid point with lambda >= 0 after a negative one; -1 if none."""
    neg = ex.exponents < 0
    for i in range(1, len(neg)):
        if neg[i - 1] and not neg[i]:
            return i
    return -1


def lyapunov_threshold(task: "Task", student: "Student", *, gamma_range: tuple[float, float], batch: int = 1,
                       n_grid: int = 12, steps: int = 4000, replicas: int = 8, seed: int = 0) -> LyapunovThreshold:
    """Locate the sign change of lambda(gamma) in `gamma_range` (log grid, then linear grid, then
    linear interpolation). Raises ValueError when the coarse grid shows no sign change.
    """
    lo, hi = (validation.positive("gamma_range", v) for v in gamma_range)
    if not lo < hi:
        raise ValueError(f"gamma_range must be (lo, hi) with 0 < lo < hi, got {gamma_range!r}")
    n_grid = validation.positive_int("n_grid", n_grid, minimum=3)
    kw = dict(batch=batch, steps=steps, replicas=replicas, seed=seed)
    coarse = top_lyapunov_exponents(task, student, np.geomspace(lo, hi, n_grid), **kw)
    i = _sign_change(coarse)
    if i < 0:
        raise ValueError(f"no sign change of the top Lyapunov exponent for gamma in [{lo:.4g}, {hi:.4g}] "
                         f"(exponents {np.array2string(coarse.exponents, precision=3)}); widen gamma_range")
    a, c = coarse.gammas[i - 1], coarse.gammas[i]
    fine = top_lyapunov_exponents(task, student, np.linspace(a, c, n_grid), **kw)
    j = _sign_change(fine)
    if j < 0:  # the fine grid shifted the sign change onto an end point
        j = 1 if fine.exponents[0] >= 0 else len(fine.gammas) - 1
    g0, g1 = fine.gammas[j - 1], fine.gammas[j]
    e0, e1 = fine.exponents[j - 1], fine.exponents[j]
    slope = (e1 - e0) / (g1 - g0)
    root = g0 - e0 / slope if slope > 0 else 0.5 * (g0 + g1)
    se = float(max(fine.se[j - 1], fine.se[j]) / slope) if slope > 0 else float("nan")
    method = (f"E19: renormalised vector iteration, {steps} steps ({coarse.burn} burn-in), {replicas} replicas, "
              f"batch {batch}, seed {seed}; sign change bracketed on a {n_grid}-point log grid, refined on a "
              f"{n_grid}-point linear grid, linear interpolation; SE = SE(lambda) / slope")
    return LyapunovThreshold(Estimate(float(root), se, method), (float(g0), float(g1)), coarse, fine, method)
