"""The instrument protocol, schedules, the evaluation sample and per-chain streams (STYLE 1, 2).

An instrument has a `name`, a `schedule(step) -> bool`, the shared inputs it `needs` and
`observe(ctx) -> {quantity: values [R]}`. The loop knows nothing of what instruments compute: at a
recorded step it builds one frozen `StepContext`, computes every need that the due instruments
declare exactly once (`needs`: each from its own random stream), calls the instruments and stores
what they return.

A need is either a plain attribute of the context ("theta", "theta_star", "eval_set", ...) or a
computed input from the registry of needs (the step context's module), named with an optional parameter:
"eval_log_q", "probe:256", "grad_moments:256", "grad_moments_at_optimum:256". Randomness comes
only from `ctx.streams(name)`: one generator per chain, keyed by (seed, name, global chain index),
so chain r's numbers depend neither on R nor on the other instruments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np
import torch

from synthetic.registry import Registry

from ..rng import instrument_stream

if TYPE_CHECKING:  # imported for annotations only; the loop passes the objects in
    from synthetic.base import Task

#: every registered instrument class, by name (contract tests and `bkd info` read it)
INSTRUMENTS: Registry = Registry("instrument")
register_instrument = INSTRUMENTS


@dataclass(frozen=True)
class EvalSet:
    """A fixed evaluation sample shared by every chain and every recorded step.

    Attributes:
        x: inputs `[N, d]` (student dtype). y: labels `[N]` int64, drawn with x.
        p: true BCPs `[N, K]` (student dtype). log_p: log of p `[N, K]`, computed in log space by the task.
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
        return cls(x=torch.as_tensor(x, dtype=dtype), y=torch.as_tensor(y, dtype=torch.int64),
                   p=torch.as_tensor(np.exp(log_p), dtype=dtype), log_p=torch.as_tensor(log_p, dtype=dtype))

    def to(self, device: torch.device | str) -> "EvalSet":
        """The same sample with its tensors on `device`."""
        return EvalSet(*(getattr(self, f).to(device) for f in ("x", "y", "p", "log_p")))


class StreamBank:
    """Per-chain generators by name: `bank(name)` is the list of R generators of that consumer.

    Each list is made on first use from `rng.instrument_stream(seed, name, first_chain + r)` and
    kept, so successive observations continue the same streams.
    """

    def __init__(self, seed: int, chains: np.ndarray) -> None:
        self.seed, self.chains = int(seed), np.asarray(chains)
        self._streams: dict[str, list[np.random.Generator]] = {}

    def __call__(self, name: str) -> list[np.random.Generator]:
        if name not in self._streams:
            self._streams[name] = [instrument_stream(self.seed, name, int(c)) for c in self.chains]
        return self._streams[name]


@runtime_checkable
class Instrument(Protocol):
    """A measurement taken during training.

    Attributes:
        name: a short identifier (its random stream is keyed by it).
        needs: the context attributes and computed needs it reads (module docstring).
    """

    name: str
    needs: frozenset[str]

    def schedule(self, step: int) -> bool:
        """Return True when the instrument should observe at `step`."""

    def observe(self, ctx: Any) -> Mapping[str, torch.Tensor]:
        """Return quantity name -> values `[R]`, one per chain, from the step's context."""


@dataclass(frozen=True)
class Every:
    """Schedule: every `k` steps, always including step 0 and the last step `last` when given."""

    k: int
    last: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
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


@dataclass(frozen=True)
class PerPoint:
    """A quantity measured as a mean over the shared evaluation sample (DESIGN 2.9, option (c)).

    Attributes:
        values: per chain `[R]` (the mean over the N evaluation points).
        points: per evaluation point, the mean over the active chains `[N]`. The run keeps these so
            that the evaluation sample's own error, shared by every chain, can be added to the SE
            (`records.Run.summary`).
    """

    values: torch.Tensor
    points: torch.Tensor


def per_point(per_chain_point: torch.Tensor, active: torch.Tensor) -> PerPoint:
    """`PerPoint` of per-chain, per-point values `[R, N]`: chain values masked where inactive, point
    values averaged over the active chains."""
    values = mask_inactive(per_chain_point.mean(dim=-1), active)
    act = active.to(per_chain_point.device)
    points = per_chain_point[act].mean(dim=0) if bool(act.any()) else torch.full_like(per_chain_point[0], float("nan"))
    return PerPoint(values, points)


def mask_inactive(values: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Return `values` `[R]` with NaN for chains that have diverged (`active` False)."""
    return torch.where(active.to(values.device), values, torch.full_like(values, float("nan")))
