"""The task protocol: a generative model of (x, y) whose Bayes class probabilities are exact.

Shapes: `N` samples, `d` input dimensions, `K` classes. Arrays are numpy float64.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_softmax

from . import validation


@dataclass(frozen=True)
class Estimate:
    """A number with its standard error; `se == 0` for exact values and quadrature.

    Attributes:
        value: the estimate.
        se: its standard error (same units).
        method: how it was obtained, e.g. "quadrature", "monte carlo (n=100000)".
    """

    value: float
    se: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "se": self.se, "method": self.method}


class Task(abc.ABC):
    """A synthetic classification task with exact BCPs p(x) = P(y | x) (DESIGN 2.1, 3).

    Subclasses implement `num_classes`, `dim`, `sample` and `log_bcp`; the rest has defaults.
    """

    #: short name used on the command line ("paper", "triangle", ...)
    name: str = "task"

    @property
    @abc.abstractmethod
    def num_classes(self) -> int:
        """K, the number of classes."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """d, the input dimension."""

    @abc.abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw n i.i.d. pairs. Returns x `[n, d]` float64 and y `[n]` int64 in {0..K-1}."""

    @abc.abstractmethod
    def log_bcp(self, x: np.ndarray) -> np.ndarray:
        """Return log p(x) `[N, K]`, computed stably in log space."""

    def bcp(self, x: np.ndarray) -> np.ndarray:
        """Return the Bayes class probabilities p(x) `[N, K]` (rows on the simplex)."""
        return np.exp(self.log_bcp(x))

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        return validation.finite_array("x", x, shape=(None, self.dim))

    @staticmethod
    def _normalise(logits: np.ndarray) -> np.ndarray:
        return log_softmax(logits, axis=-1)
