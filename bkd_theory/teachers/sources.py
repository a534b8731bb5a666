"""Targets of a finite training set under a noise mode (DESIGN 2.2).

In the **online** regime every step draws fresh (x, y) from the task and the loop calls
`teacher.sample(p, y, rng, x=x)` on them; no `TargetSource` is involved. On a **finite** training
set of n points, `TargetSource` provides the targets: `fresh` draws a new target each time a point
is visited; `frozen` draws one target per point once (from the given generator) and reuses it in
every epoch. The labels of a finite set are themselves frozen draws, so `onehot` (and the label
part of `smoothing` and `mixture`) is the same in both modes.
"""
from __future__ import annotations

import numpy as np

from ..config import NoiseMode
from .base import Teacher, check_p, check_x, check_y
from .registry import parse_teacher

__all__ = ["TargetSource"]


class TargetSource:
    """Targets of a finite training set of n points under a noise mode (DESIGN 2.2).

    - `frozen`: one draw t_i per point, made here from `rng` and reused in every epoch; the same
      generator state gives the same table.
    - `fresh`: a new draw `teacher.sample(p[idx], y[idx], rng, x=x[idx])` at every visit.
    - `online` is not a mode of a finite set (ValueError).

    Args:
        teacher: a `Teacher` or a spec string.
        p: true BCPs of the training points `[n, K]`.
        y: their labels `[n]` int.
        mode: "fresh" or "frozen" (`NoiseMode`).
        rng: generator for the frozen table; may be None in fresh mode, or when t is fixed given
            (p, y, x).
        x: the training inputs `[n, d]` (read by teachers of x).
    """

    def __init__(self, teacher: Teacher | str, p: np.ndarray, y: np.ndarray, mode: NoiseMode | str,
                 rng: np.random.Generator | None = None, *, x: np.ndarray | None = None) -> None:
        self.teacher = parse_teacher(teacher)
        self.mode = NoiseMode.coerce(mode, "mode")
        if self.mode is NoiseMode.ONLINE:
            raise ValueError("mode='online' is not valid for a finite training set: use the online regime "
                             "(regime='online'), where each step draws fresh points and their targets")
        if np.ndim(p) != 2:
            raise ValueError(f"p must have shape [n, K], got shape {np.shape(p)}")
        self.p, _ = check_p(p)
        self.y = check_y(y, (self.p.shape[0],), self.p.shape[1])
        self.x = check_x(x, (self.p.shape[0],))
        self.table = self.teacher.sample(self.p, self.y, rng, x=self.x) if self.mode is NoiseMode.FROZEN else None

    @property
    def n(self) -> int:
        """Number of training points."""
        return self.p.shape[0]

    def __call__(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Targets `[..., K]` for integer indices `idx` `[...]` into the training set.

        `rng` is used in fresh mode only (required there for a stochastic teacher).
        """
        idx = np.asarray(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            if idx.size:
                raise ValueError(f"idx must hold integer indices, got dtype {idx.dtype}")
            idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise ValueError(f"idx must lie in [0, {self.n - 1}] (n={self.n}), got range [{idx.min()}, {idx.max()}]")
        if self.table is not None:
            return self.table[idx]
        flat = idx.reshape(-1)
        xs = None if self.x is None else self.x[flat]
        return self.teacher.sample(self.p[flat], self.y[flat], rng, x=xs).reshape(*idx.shape, self.p.shape[1])
