"""How targets are drawn for training: noise modes of a finite set, and trained teachers (DESIGN 2.2).

Regimes and noise modes. In the **online** regime every step draws fresh (x, y) from the task and
the loop calls `teacher.sample(p, y, rng)` on them; no `TargetSource` is involved. On a **finite**
training set of n points, `TargetSource` provides the targets: `fresh` draws a new target each time
a point is visited; `frozen` draws one target per point once (from the given generator) and reuses
it in every epoch. The labels of a finite set are themselves frozen draws, so `onehot` (and the
label part of `smoothing` and `mixture`) is the same in both modes.

A trained teacher (`bkd_theory.bayesian`, flag `input_dependent`) is a fixed function p~(x): it is
used through `OnInputs`, which applies the law `bcp` (or the KD mixture) to p~(x) in place of p.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from synthetic.validation import in_interval

from ._laws import check_p, check_y
from .config import NoiseMode
from .teachers import BCP, Mixture, Teacher, parse_teacher

__all__ = ["OnInputs", "TargetSource", "draw_targets"]

class OnInputs:
    """The targets of a trained teacher (`bkd_theory.bayesian`), optionally mixed with labels.

    t = p~(x) (lam = 1), or the KD objective t = (1 - lam) e_y + lam p~(x) (lam < 1): the law
    `bcp` or `mixture:lam:bcp` of this module applied to the teacher's p~(x) in place of p. The SGD
    loop trains on it and its instruments draw probe targets from the same law.
    """

    input_dependent = True
    unbiased = False

    def __init__(self, teacher: Any, lam: float = 1.0) -> None:
        lam = in_interval("lam", lam, 0.0, 1.0)
        self.teacher = teacher
        self.law: Teacher = BCP() if lam >= 1.0 else Mixture(lam, BCP())
        self.stochastic = lam < 1.0
        self.spec = teacher.spec if lam >= 1.0 else f"mixture:{lam:g}:{teacher.spec}"

    def probs(self, x: np.ndarray) -> np.ndarray:
        """Return the teacher's p~(x) `[N, K]`."""
        return self.teacher.targets(x)

    def sample(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Return targets `[N, K]` for inputs x `[N, d]` and labels y `[N]`."""
        return self.law.sample(self.probs(x), y, rng)


def draw_targets(teacher: Any, x: np.ndarray, p: np.ndarray, y: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Return targets `[N, K]` for inputs x `[N, d]` with true BCPs p `[N, K]` and labels y `[N]`.

    A target law of this module reads (p, y); a trained teacher (`bkd_theory.bayesian`, flag
    `input_dependent`) is a fixed function of x and reads (x, y).
    """
    return teacher.sample(x if getattr(teacher, "input_dependent", False) else p, y, rng)


class TargetSource:
    """Targets of a finite training set of n points under a noise mode (DESIGN 2.2).

    - `frozen`: one draw t_i per point, made here from `rng` and reused in every epoch; the same
      generator state gives the same table.
    - `fresh`: a new draw `teacher.sample(p[idx], y[idx], rng)` at every visit.
    - `online` is not a mode of a finite set (ValueError): in the online regime the loop draws fresh
      (x, y) and calls `teacher.sample` itself.

    Args:
        teacher: a `Teacher` or a spec string.
        p: true BCPs of the training points `[n, K]`.
        y: their labels `[n]` int.
        mode: "fresh" or "frozen" (`NoiseMode`).
        rng: generator for the frozen table; may be None in fresh mode, or when t is fixed given
            (p, y) (bcp, temperature, onehot, smoothing).
    """

    def __init__(self, teacher: Teacher | str, p: np.ndarray, y: np.ndarray, mode: NoiseMode | str,
                 rng: np.random.Generator | None = None) -> None:
        self.teacher = parse_teacher(teacher)
        self.mode = NoiseMode.coerce(mode, "mode")
        if self.mode is NoiseMode.ONLINE:
            raise ValueError("mode='online' is not valid for a finite training set: use the online regime "
                             "(regime='online'), where each step draws fresh points and their targets")
        if np.ndim(p) != 2:
            raise ValueError(f"p must have shape [n, K], got shape {np.shape(p)}")
        self.p, _ = check_p(p)
        self.y = check_y(y, (self.p.shape[0],), self.p.shape[1])
        self.table = self.teacher.sample(self.p, self.y, rng) if self.mode is NoiseMode.FROZEN else None

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
        return self.teacher.sample(self.p[flat], self.y[flat], rng).reshape(*idx.shape, self.p.shape[1])
