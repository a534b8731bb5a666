"""A function of x is a teacher: t = p~(x) for any fixed p~ (DESIGN 2.10, E23).

`FunctionTeacher(fn)` is the law `bcp` applied to p~(x) in place of the true p: deterministic
(Cov(t | x) = 0) and biased (tbar = p~ != p in general). It composes like any law:
`Mixture(0.7, FunctionTeacher(fn))` is the KD objective (1 - lam) e_y + lam p~(x). The trained
teachers (`trained`) are function teachers whose p~ is a fitted network.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from synthetic import validation

from .base import CovForm, Teacher, check_p, zeros_cov

__all__ = ["FunctionTeacher"]


class FunctionTeacher(Teacher):
    """t = p~(x) for a fixed function `fn: x [N, d] -> p~ [N, K]` (rows on the simplex).

    Args:
        fn: the teacher's probabilities, or (with `log=True`) its log-probabilities, of x `[N, d]`.
        name: the teacher's spec in run records (not parseable back: pass the object itself).
        log: `fn` returns log-probabilities (computed in log space: no underflow).
    """

    stochastic, unbiased, needs_x = False, False, True

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray] | None = None, *, name: str = "function",
                 log: bool = False) -> None:
        if fn is not None and not callable(fn):
            raise ValueError(f"fn must be a callable x [N, d] -> p~ [N, K], got {fn!r}")
        self._fn, self._log, self._name = fn, bool(log), str(name)

    @property
    def spec(self) -> str:
        return self._name

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """log p~(x) `[N, K]` float64."""
        x = validation.finite_array("x", x, ndim=2)
        out = np.asarray(self._fn(x), dtype=np.float64)
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(f"teacher {self.spec!r} must return an array [N, K] for x [N, d], got shape {out.shape}")
        if self._log:
            check_p(np.exp(out), "teacher probabilities")
            return out
        with np.errstate(divide="ignore"):
            return np.log(check_p(out, "teacher probabilities")[0].reshape(out.shape))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """p~(x) `[N, K]` float64, rows on the simplex."""
        return np.exp(self.log_proba(x))

    def probs(self, x: np.ndarray) -> np.ndarray:
        """The targets p~(x) `[N, K]` (= `predict_proba`)."""
        return self.predict_proba(x)

    def _source(self, p: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        q = self.probs(x)
        if q.shape != p.shape:
            raise ValueError(f"teacher {self.spec!r} returned probabilities of shape {q.shape}; the task has {p.shape}")
        return check_p(q, "teacher probabilities")[0]

    def _sample(self, p, y, rng):
        return p.copy()

    def _cov(self, p):
        return zeros_cov(p)

    def _cov_form(self) -> CovForm | None:
        return None  # biased: no closed form of the noise at theta*
