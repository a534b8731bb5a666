"""Fitting modes of a trained teacher (DESIGN 2.10, "Teachers in the paper's protocol").

- `in-sample` (the paper's protocol): the teacher is fitted on the n points the student trains on.
- `cross-fitted` (Dao et al. 2021): the n points are split into k folds, fold j = {i : i mod k = j}
  (the points are i.i.d., so positions are a random partition); point i's target comes from the
  teacher fitted on the other k - 1 folds, never on its own.
- `out-of-sample`: the teacher is fitted on an independent sample.

`PointTeacher` is the teacher the student sees: a table from training points to the component
teacher responsible for each (one per chain in-sample, one per chain and fold cross-fitted). It
answers only at the points of its table (exact row match), which makes "a point's target never
comes from a teacher fitted on it" true by construction and checkable.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from synthetic import validation

from ..config import StrEnum
from .fitbase import TrainedTeacher, check_data
from .trained import fit_teacher

__all__ = ["FIT_MODES", "FitMode", "PointTeacher", "fit_chains", "fit_cross", "fold_of"]


class FitMode(StrEnum):
    """Where a trained teacher is fitted relative to the student's training points (DESIGN 2.10)."""

    IN_SAMPLE = "in-sample"
    CROSS_FITTED = "cross-fitted"
    OUT_OF_SAMPLE = "out-of-sample"


FIT_MODES = tuple(m.value for m in FitMode)


def fold_of(n: int, folds: int) -> np.ndarray:
    """Fold index i mod k of each of n points `[n]` (ValueError for k < 2 or an empty fold, k > n)."""
    k = validation.positive_int("folds", folds, minimum=2)
    if k > n:
        raise ValueError(f"folds must be <= n = {n} (each fold needs a point), got {k}: fold {n} would be empty")
    return np.arange(n) % k


class PointTeacher(TrainedTeacher):
    """p~(x_i) = components[owner[i]](x_i) at the table's points x_i; other inputs raise ValueError.

    Attributes:
        points: the table's inputs `[M, d]`. owner: component index of each point `[M]`.
        components: the fitted teachers. mode: the fitting mode (`FIT_MODES`).
        fitted_on: for each component, the indices into `points` it was fitted on (None if the
            sample was independent of the table).
        groups: per training set (chain), (its rows in `points`, its component indices); one
            group unless built by `fit_chains`.
    """

    def __init__(self, points: np.ndarray, owner: np.ndarray, components: Sequence[TrainedTeacher], mode: str,
                 fitted_on: Sequence[np.ndarray | None],
                 groups: Sequence[tuple[np.ndarray, list[int]]] | None = None) -> None:
        c0 = components[0]
        super().__init__(f"{mode}:{c0.spec}", c0.num_classes, c0.dim, c0.config,
                         float(sum(c.train_time for c in components)))
        self.points, self.owner = np.asarray(points, dtype=np.float64), np.asarray(owner, dtype=np.int64)
        self.components, self.mode, self.fitted_on = list(components), mode, list(fitted_on)
        self.posterior_draws = all(c.posterior_draws for c in components)
        every = [(np.arange(len(self.points)), list(range(len(components))))]
        self.groups = list(groups) if groups is not None else every
        self._index: dict[bytes, int] = {}
        for i, row in enumerate(self.points):
            j = self._index.setdefault(row.tobytes(), i)
            if self.owner[j] != self.owner[i]:
                raise ValueError(f"points holds the same input twice with different owners ({j} and {i})")

    def rows(self, x: np.ndarray) -> np.ndarray:
        """Table index of each row of x `[N]` (ValueError naming x if a row is not a table point)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        idx = np.fromiter((self._index.get(r.tobytes(), -1) for r in x), dtype=np.int64, count=len(x))
        if (idx < 0).any():
            raise ValueError(f"x holds {int((idx < 0).sum())} inputs that are not training points of the {self.mode} "
                             f"teacher {self.spec!r}; evaluate its components on fresh points instead")
        return idx

    def _each(self, x: np.ndarray, fn: Any, lead: tuple[int, ...]) -> np.ndarray:
        who = self.owner[self.rows(x)]
        out = None
        for c in np.unique(who):
            sel = who == c
            part = fn(self.components[c], x[sel])
            if out is None:
                out = np.empty((*lead, len(x), part.shape[-1]))
            out[..., sel, :] = part
        return out if out is not None else np.empty((*lead, 0, self.num_classes))

    def _log_proba(self, x: np.ndarray) -> np.ndarray:
        return self._each(x, lambda t, xs: t.log_proba(xs), ())

    def _sample_proba(self, x: np.ndarray, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.from_numpy(self._each(x, lambda t, xs: t.sample_proba(xs, count, generator), (count,)))


def _fit(kind: str, x: np.ndarray, y: np.ndarray, kwargs: dict[str, Any]) -> TrainedTeacher:
    return fit_teacher(kind, x, y, **kwargs)


def fit_cross(kind: str, x: np.ndarray, y: np.ndarray, folds: int, **kwargs: Any) -> PointTeacher:
    """The cross-fitted teacher of one training set: k teachers, teacher j fitted on the points
    outside fold j (`fold_of`) and answering for fold j. `kwargs`: `fit_teacher`'s."""
    x, y, _ = check_data(x, y, kwargs.get("num_classes"))
    fold = fold_of(len(x), folds)
    inside = [np.flatnonzero(fold != j) for j in range(int(folds))]
    return PointTeacher(x, fold, [_fit(kind, x[i], y[i], kwargs) for i in inside], "cross-fitted", inside)


def fit_chains(kind: str, mode: str, samples: Sequence[tuple[np.ndarray, np.ndarray]], *, folds: int = 5,
               independent: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, **kwargs: Any) -> PointTeacher:
    """One teacher table over the chains' training sets `samples` [(x_r `[n, d]`, y_r `[n]`)].

    in-sample: chain r's teacher is fitted on (x_r, y_r). cross-fitted: k fold teachers per chain
    (`fit_cross`). out-of-sample: chain r's teacher is fitted on `independent[r]`. Returns a
    `PointTeacher` whose `train_time` is the total fitting time in seconds.
    """
    mode = FitMode.coerce(mode, "fit_mode").value
    if not samples:
        raise ValueError("samples must hold at least one training set (x, y), got none")
    if mode == "out-of-sample" and (independent is None or len(independent) != len(samples)):
        raise ValueError("independent must hold one labelled sample per training set for fit_mode 'out-of-sample'")
    t0, points, owner, comps, fitted_on, groups = time.perf_counter(), [], [], [], [], []
    offset = 0
    for r, (x, y) in enumerate(samples):
        x, y, _ = check_data(x, y, kwargs.get("num_classes"))
        first = len(comps)
        if mode == "cross-fitted":
            cross = fit_cross(kind, x, y, folds, **kwargs)
            owner.append(len(comps) + cross.owner)
            comps += cross.components
            fitted_on += [offset + i for i in cross.fitted_on]
        else:
            owner.append(np.full(len(x), len(comps)))
            comps.append(_fit(kind, *(independent[r] if mode == "out-of-sample" else (x, y)), kwargs))
            fitted_on.append(None if mode == "out-of-sample" else offset + np.arange(len(x)))
        groups.append((offset + np.arange(len(x)), list(range(first, len(comps)))))
        points.append(x)
        offset += len(x)
    table = PointTeacher(np.concatenate(points), np.concatenate(owner), comps, mode, fitted_on, groups)
    table.train_time = time.perf_counter() - t0
    return table
