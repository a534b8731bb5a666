"""The per-step context of the instruments and their shared inputs ("needs"), each computed at
most once per recorded step (STYLE 1, 2).

A need is named "name" or "name:PARAM" ("probe:256"). Each is registered with `@register_need`
and computed from the `StepContext`; needs that draw random numbers use the per-chain streams
`ctx.streams(<the need's full name>)`, so two instruments that declare "grad_moments:256" share one
probe and one pass of per-sample gradients, and an instrument with its own probe size gets its
own stream.

- "eval_log_q": the student's log-probabilities on the evaluation sample `[R, N, K]`.
- "probe:M": M fresh task points per chain with the run teacher's targets: (x `[R, M, d]`, t `[R, M, K]`).
- "grad_moments:M": `GradientMoments` of single-sample gradients at theta_k on "probe:M".
- "grad_moments_at_optimum:M": the same at theta* (NaN when the student is not realizable).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from synthetic import validation
from synthetic.registry import Registry

from .base import EvalSet, StreamBank
from .moments import gradient_moments

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..students import Student
    from ..teachers import Teacher

#: the context attributes an instrument may declare as needs (always available)
ATTRIBUTES = frozenset({"theta", "theta_star", "student", "task", "teacher", "eval_set", "active", "gamma", "step",
                        "batch_size"})

#: every computed need: name -> compute(ctx, param: str | None)
NEEDS: Registry = Registry("instrument need")
register_need = NEEDS
#: cap on chains x eval points x (d + 1) per chunk when evaluating the student on the eval set
EVAL_CHUNK_ELEMENTS = 2_000_000
#: blocks of the evaluation: at most EVAL_POINTS points and EVAL_ROWS (chain, point) pairs per call, so
#: a network's hidden activations stay in cache (a block's rows are independent, so results do not
#: depend on the blocking: tested bit for bit); a student with a feature model has no hidden
#: activations and takes blocks of `FEATURE_EVAL_POINTS` x `FEATURE_EVAL_ROWS` (fewer, larger calls)
EVAL_POINTS, EVAL_ROWS = 256, 4096
FEATURE_EVAL_POINTS, FEATURE_EVAL_ROWS = 4096, 131072


@dataclass(frozen=True)
class StepContext:
    """Everything an instrument may read at one recorded step; instruments must not modify it.

    Attributes:
        step: number of updates done so far (0 = initial parameters).
        gamma: the step size used for the last update (the scheduled value at `step`).
        theta: a snapshot of every chain's parameters `[R, P]` (a copy: the loop's buffers are its own).
        theta_star: the population minimiser `[P]`, or None when the student is not realizable.
        student, task, teacher: the run's objects (teacher: the law SGD trains on).
        batch_size: b. eval_set: the fixed evaluation sample. active: chains that have not diverged `[R]`.
        streams: per-chain generators by name (`StreamBank`).
        needs: the computed needs of this step (name -> value): the loop computes the declared ones
            before the instruments observe; `need(name)` computes any other on first use.
    """

    step: int
    gamma: float
    theta: torch.Tensor
    theta_star: torch.Tensor | None
    student: "Student"
    task: "Task"
    teacher: "Teacher"
    batch_size: int
    eval_set: EvalSet
    active: torch.Tensor
    streams: StreamBank
    needs: dict = field(default_factory=dict, repr=False, compare=False)

    def need(self, name: str) -> Any:
        """The computed need `name` (it must be among the instrument's declared `needs`)."""
        if name not in self.needs:
            self.needs[name] = compute_need(self, name)
        return self.needs[name]

    @property
    def eval_log_q(self) -> torch.Tensor:
        """Student log-probabilities on the evaluation inputs `[R, N, K]` (the need "eval_log_q")."""
        return self.need("eval_log_q")


def split(name: str) -> tuple[str, str | None]:
    """("probe", "256") for "probe:256"; (name, None) without a parameter."""
    head, sep, param = str(name).partition(":")
    return head, (param if sep else None)


def check_needs(needs: frozenset[str] | set[str], owner: str) -> None:
    """ValueError naming `owner` when a declared need is neither an attribute nor a registered need."""
    for name in needs:
        head, _ = split(name)
        if name not in ATTRIBUTES and head not in NEEDS:
            raise ValueError(f"instrument {owner!r} needs {name!r}, which is neither a context attribute "
                             f"({', '.join(sorted(ATTRIBUTES))}) nor a registered need ({', '.join(NEEDS.names())})")


def compute_need(ctx: "StepContext", name: str) -> Any:
    """Compute the need `name` on `ctx` (the caller caches it)."""
    head, param = split(name)
    return NEEDS.get(head).obj(ctx, param)


def _size(param: str | None, name: str) -> int:
    if param is None:
        raise ValueError(f"need {name!r} takes a probe size, e.g. '{name}:256'")
    return validation.positive_int(f"{name} probe size", int(param) if param.isdigit() else param)


@register_need("eval_log_q")
def eval_log_q(ctx: "StepContext", param: str | None = None) -> torch.Tensor:
    """Student log-probabilities on the evaluation inputs `[R, N, K]`, computed in blocks of at most
    `EVAL_POINTS` points and `EVAL_ROWS` (chain, point) pairs (`EVAL_CHUNK_ELEMENTS` input elements)."""
    chains = ctx.theta.shape[0]
    n, d = ctx.eval_set.x.shape
    points, pairs = ((FEATURE_EVAL_POINTS, FEATURE_EVAL_ROWS) if ctx.student.feature_model() is not None
                     else (EVAL_POINTS, EVAL_ROWS))
    pts = min(n, points)
    step = max(1, min(pairs // pts, EVAL_CHUNK_ELEMENTS // (pts * (d + 1))))
    rows = []
    for lo in range(0, chains, step):
        theta = ctx.theta[lo:lo + step]
        block = [ctx.student.log_probs(theta, ctx.eval_set.x[i:i + pts].expand(theta.shape[0], -1, d))
                 for i in range(0, n, pts)]
        rows.append(block[0] if len(block) == 1 else torch.cat(block, dim=1))
    return rows[0] if len(rows) == 1 else torch.cat(rows)


@register_need("probe")
def probe(ctx: "StepContext", param: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """M fresh (x, t) per chain from the chain's own "probe:M" stream: x `[R, M, d]`, t `[R, M, K]`."""
    m = _size(param, "probe")
    xs, ts = [], []
    for gen in ctx.streams(f"probe:{m}"):
        x, y = ctx.task.sample(m, gen)
        xs.append(x)
        ts.append(ctx.teacher.sample(ctx.task.bcp(x), y, gen, x=x))
    dtype, device = ctx.student.dtype, ctx.theta.device
    return (torch.as_tensor(np.stack(xs), dtype=dtype, device=device),
            torch.as_tensor(np.stack(ts), dtype=dtype, device=device))


def slices(x: torch.Tensor, t: torch.Tensor) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """`draw(c)` handing out successive slices of c samples of fixed probe arrays `[R, M, ...]`."""
    pos = [0]

    def draw(c: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo = pos[0]
        pos[0] += c
        return x[:, lo:lo + c], t[:, lo:lo + c]

    return draw


@register_need("grad_moments")
def grad_moments(ctx: "StepContext", param: str | None) -> Any:
    """`GradientMoments` at theta_k on "probe:M" (diverged chains evaluated at 0 and masked later)."""
    m = _size(param, "grad_moments")
    theta = ctx.theta.clone()
    theta[~ctx.active] = 0.0  # keep diverged chains' non-finite values out of the work
    return gradient_moments(ctx.student, theta, slices(*ctx.need(f"probe:{m}")), m)


@register_need("grad_moments_at_optimum")
def grad_moments_at_optimum(ctx: "StepContext", param: str | None) -> Any:
    """`GradientMoments` at theta* on "probe:M"; None when the student is not realizable."""
    m = _size(param, "grad_moments_at_optimum")
    if ctx.theta_star is None:
        return None
    chains = ctx.theta.shape[0]
    theta = ctx.theta_star.to(ctx.theta).reshape(1, -1).expand(chains, -1).contiguous()
    return gradient_moments(ctx.student, theta, slices(*ctx.need(f"probe:{m}")), m)


def nan_values(ctx: "StepContext") -> torch.Tensor:
    """NaN for every chain `[R]`."""
    return torch.full((ctx.theta.shape[0],), math.nan, dtype=ctx.theta.dtype, device=ctx.theta.device)
