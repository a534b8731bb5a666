"""Moments of single-sample gradients over probe points (DESIGN 2.5, E4): the kernels behind the
gradient instruments and the standalone Monte Carlo estimate `sigma2_at_optimum`.

Memory: per-sample gradients are `[R, m, P]`; they are computed in chunks over m so that one chunk
holds at most `budget_bytes` (default 200 MB) and only running sums are kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from synthetic import validation
from synthetic.base import Estimate

if TYPE_CHECKING:
    from synthetic.base import Task

    from ..students import Student
    from ..teachers import Teacher

DEFAULT_BUDGET_BYTES = 200_000_000

Draw = Callable[[int], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class GradientMoments:
    """Running per-chain moments of single-sample gradients.

    Attributes:
        second_moment: mean of ||g_i||^2 over the m probes `[R]`.
        cov_trace: unbiased tr Cov(g) = m/(m-1) (mean ||g_i||^2 - ||mean g_i||^2) `[R]` (NaN if m=1).
        second_moment_se: SE of `second_moment` from the spread of ||g_i||^2 over probes `[R]`.
        m: number of probe samples per chain.
    """

    second_moment: torch.Tensor
    cov_trace: torch.Tensor
    second_moment_se: torch.Tensor
    m: int


def chunk_size(chains: int, num_params: int, itemsize: int, m: int, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> int:
    """Return the number of probe samples per chunk so that `[R, c, P]` fits in `budget_bytes`."""
    per_sample = max(1, chains * num_params * itemsize)
    return int(max(1, min(m, budget_bytes // per_sample)))


def probe_draw(task: "Task", teacher: "Teacher", rng: np.random.Generator, chains: int, dtype: torch.dtype) -> Draw:
    """Return `draw(c) -> (x [R, c, d], t [R, c, K])`: fresh task points with teacher targets.

    Draws `R * c` points with `task.sample`, their exact BCPs, and the teacher's targets, all from
    `rng` in a fixed order.
    """

    def draw(c: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = task.sample(chains * c, rng)
        t = teacher.sample(task.bcp(x), y, rng, x=x)
        x_t = torch.as_tensor(x, dtype=dtype).reshape(chains, c, -1)
        return x_t, torch.as_tensor(t, dtype=dtype).reshape(chains, c, -1)

    return draw


def gradient_moments(
    student: "Student", theta: torch.Tensor, draw: Draw, m: int, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> GradientMoments:
    """Estimate E||g||^2 and tr Cov(g) per chain from `m` single-sample gradients.

    Args:
        student: provides `grad_norms_and_sum(theta [R, P], x [R, c, d], t [R, c, K])` (`Student`).
        theta: parameters `[R, P]`.
        draw: `draw(c) -> (x [R, c, d], t [R, c, K])`, fresh probe points and targets.
        m: probe samples per chain (>= 1).
        budget_bytes: memory cap for one chunk of per-sample gradients.

    Returns:
        GradientMoments with values `[R]` in units of squared gradient norm.
    """
    m = validation.positive_int("m", m)
    chains, num_params = theta.shape
    c_max = chunk_size(chains, num_params, theta.element_size(), m, budget_bytes)
    acc = theta.new_zeros(chains, dtype=torch.float64)
    acc2 = theta.new_zeros(chains, dtype=torch.float64)
    g_sum = theta.new_zeros(chains, num_params, dtype=torch.float64)
    done = 0
    while done < m:
        c = min(c_max, m - done)
        x, t = draw(c)
        sq, g_chunk = student.grad_norms_and_sum(theta, x, t)
        acc += sq.sum(dim=-1)
        acc2 += (sq * sq).sum(dim=-1)
        g_sum += g_chunk
        done += c
    second = acc / m
    mean_norm2 = ((g_sum / m) ** 2).sum(dim=-1)
    if m > 1:
        cov = (second - mean_norm2) * (m / (m - 1))
        var_sq = (acc2 / m - second**2).clamp_min(0.0) * (m / (m - 1))
        se = (var_sq / m).sqrt()
    else:
        cov = torch.full_like(second, float("nan"))
        se = torch.full_like(second, float("nan"))
    return GradientMoments(second.to(theta.dtype), cov.to(theta.dtype), se.to(theta.dtype), m)


def sigma2_at_optimum(
    student: "Student",
    task: "Task",
    teacher: "Teacher",
    n: int,
    rng: np.random.Generator,
    *,
    theta_star: torch.Tensor | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> Estimate:
    """Monte Carlo sigma_T^2 = E ||grad l(theta*; x, t)||^2 (E4) from `n` probe samples.

    The SE is the normal-theory one, std(||g_i||^2) / sqrt(n). With one-hot targets the squared
    norms are heavy-tailed and this SE is slightly optimistic (DESIGN 2.9): use n >= 1e5 for 1 %.

    Args:
        student, task, teacher: the run's objects; theta* defaults to `student.optimum(task)`.
        n: number of probe samples.
        rng: generator for the probe points and targets.
        theta_star: parameters `[P]` at which to evaluate (default: the optimum).
        budget_bytes: memory cap for one chunk of per-sample gradients.

    Returns:
        Estimate(value, se, method) in units of squared gradient norm.
    """
    n = validation.positive_int("n", n)
    if theta_star is None:
        theta_star = student.optimum(task)
    theta = theta_star.to(student.dtype).reshape(1, -1)
    draw = probe_draw(task, teacher, rng, 1, student.dtype)
    mom = gradient_moments(student, theta, draw, n, budget_bytes=budget_bytes)
    return Estimate(float(mom.second_moment[0]), float(mom.second_moment_se[0]), f"monte carlo (n={n})")
