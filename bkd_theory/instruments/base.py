"""The instrument protocol and the per-step context (STYLE 1, 2).

The SGD loop builds one frozen `StepContext` per recorded step and hands it to every instrument
whose `schedule(step)` is true. Quantities that are costly and shared (per-sample gradients, the
student's evaluation log-probabilities) are computed on first access and cached on the context, so
each is computed at most once per step whichever instruments ask for it.

An instrument returns a dict `quantity -> tensor [R]` (one value per chain) in the units its
docstring states. The loop stores them; it never looks inside.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:  # imported for annotations only; the loop passes the objects in
    from synthetic.base import Task

    from ..students import Student
    from ..teachers import Teacher


#: cap on chains x eval points x (d + 1) per chunk when evaluating the student on the eval set
EVAL_CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class EvalSet:
    """A fixed evaluation sample shared by every chain and every recorded step.

    Attributes:
        x: inputs `[N, d]` (student dtype).
        y: labels `[N]` int64, drawn with x.
        p: true BCPs `[N, K]` (student dtype).
        log_p: log of p `[N, K]`, computed in log space by the task.
    """

    x: torch.Tensor
    y: torch.Tensor
    p: torch.Tensor
    log_p: torch.Tensor

    @classmethod
    def from_task(cls, task: "Task", n: int, rng: np.random.Generator, dtype: torch.dtype = torch.float64) -> "EvalSet":
        """Draw `n` points from `task` with `rng` and store them with their exact BCPs."""
        x, y = task.sample(n, rng)
        log_p = task.log_bcp(x)
        return cls(
            x=torch.as_tensor(x, dtype=dtype),
            y=torch.as_tensor(y, dtype=torch.int64),
            p=torch.as_tensor(np.exp(log_p), dtype=dtype),
            log_p=torch.as_tensor(log_p, dtype=dtype),
        )


@dataclass(frozen=True)
class StepContext:
    """Everything an instrument may read at one recorded step. Never mutated by instruments.

    Attributes:
        step: number of SGD updates done so far (0 = initial parameters).
        gamma: the step size used for the last update (the scheduled value at `step`).
        theta: parameters of every chain `[R, P]`.
        theta_star: the population minimiser `[P]`, or None when the student is not realizable.
        student, task, teacher: the run's objects.
        batch_size: b.
        eval_set: the fixed evaluation sample.
        active: chains that have not diverged `[R]` bool.
        probe: a numpy generator for Monte Carlo inside instruments (run-wide stream; instruments
            must draw from it only inside `observe`, in a fixed order).
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
    probe: np.random.Generator
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Return `compute()`, evaluated at most once per context under `key`."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @functools.cached_property
    def eval_log_q(self) -> torch.Tensor:
        """Student log-probabilities on the evaluation inputs, `[R, N, K]`.

        Computed in chunks of chains so that the student's per-chain copies of the inputs (e.g. the
        linear student's xt `[r, N, F+1]`) stay within `EVAL_CHUNK_ELEMENTS` elements.
        """
        chains = self.theta.shape[0]
        n, d = self.eval_set.x.shape
        step = max(1, EVAL_CHUNK_ELEMENTS // max(1, n * (d + 1)))
        parts = []
        for lo in range(0, chains, step):
            theta = self.theta[lo : lo + step]
            parts.append(self.student.log_probs(theta, self.eval_set.x.expand(theta.shape[0], n, d)))
        return parts[0] if len(parts) == 1 else torch.cat(parts)


@runtime_checkable
class Instrument(Protocol):
    """A measurement taken during training.

    Attributes:
        name: a short identifier; quantities it returns are its own names (e.g. "excess_risk").
        needs: names of shared inputs it reads (documentation and for the loop's bookkeeping).
    """

    name: str
    needs: frozenset[str]

    def schedule(self, step: int) -> bool:
        """Return True when the instrument should observe at `step`."""

    def observe(self, ctx: StepContext) -> Mapping[str, torch.Tensor]:
        """Return quantity name -> values `[R]`, one per chain."""


@dataclass(frozen=True)
class Every:
    """Schedule: every `k` steps, always including step 0 and the last step `last` when given."""

    k: int
    last: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k}")

    def __call__(self, step: int) -> bool:
        return step % self.k == 0 or (self.last is not None and step == self.last)


@dataclass(frozen=True)
class LogSpaced:
    """Schedule: about `per_decade` steps per decade, plus step 0 (for curves over many decades)."""

    per_decade: int = 10
    last: int | None = None

    def __call__(self, step: int) -> bool:
        if step <= 1 or (self.last is not None and step == self.last):
            return True
        lo, hi = np.log10(step - 1), np.log10(step)
        return int(np.floor(hi * self.per_decade)) > int(np.floor(lo * self.per_decade))


@dataclass(frozen=True)
class Scheduled:
    """Base for instruments that observe on a schedule `when(step) -> bool` (default: every step)."""

    when: Callable[[int], bool] = Every(1)

    def schedule(self, step: int) -> bool:
        """Return True when the instrument should observe at `step`."""
        return bool(self.when(step))


def mask_inactive(values: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Return `values` `[R]` with NaN for chains that have diverged (`active` False)."""
    return torch.where(active.to(values.device), values, torch.full_like(values, float("nan")))
