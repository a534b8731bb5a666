"""Affine standardisation of a task (DESIGN 2.6): x' = (x - m) / s with the population moments.

The BCPs are the same functions of the original x: p'(x') = p(m + s x'). Logits that are linear in
xt(x) = (phi(x), 1) stay linear in xt(x'), with weights W' = W T (`features.affine_feature_map`),
so theta* transforms in closed form for linear and quadratic features, in both gauges.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import validation
from .base import Network, Task
from .features import affine_feature_map


class Standardized(Task):
    """The task `base` seen through x' = (x - shift) / scale.

    Args:
        base: the task in raw coordinates.
        shift: m `[d]` (default: the population mean of x, exact).
        scale: s `[d]`, > 0 (default: the population per-coordinate standard deviation, exact).
    """

    def __init__(self, base: Task, shift: Any = None, scale: Any = None) -> None:
        if not isinstance(base, Task):
            raise ValueError(f"base must be a synthetic Task, got {type(base).__name__}")
        if shift is None or scale is None:
            m, s = base.population_moments()
            shift = m if shift is None else shift
            scale = s if scale is None else scale
        self.base = base
        self.shift = validation.finite_array("shift", shift, shape=(base.dim,)).copy()
        self.scale = validation.finite_array("scale", scale, shape=(base.dim,)).copy()
        if np.any(self.scale <= 0):
            raise ValueError(f"scale must be > 0 in every coordinate, got min {self.scale.min()!r}")
        self.shift.setflags(write=False)
        self.scale.setflags(write=False)
        self.name = base.name

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    @property
    def dim(self) -> int:
        return self.base.dim

    def to_raw(self, x: np.ndarray) -> np.ndarray:
        """Map standardised inputs x' `[N, d]` back to raw x = m + s x'."""
        return self.shift + self.scale * self._check_x(x)

    def from_raw(self, x: np.ndarray) -> np.ndarray:
        """Map raw inputs x `[N, d]` to x' = (x - m) / s."""
        return (self._check_x(x) - self.shift) / self.scale

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw (x, y) from the base task (same random numbers) and standardise x."""
        x, y = self.base.sample(n, rng)
        return (x - self.shift) / self.scale, y

    def log_bcp(self, x: np.ndarray) -> np.ndarray:
        return self.base.log_bcp(self.to_raw(x))

    def logit_weights(self, features: str = "linear") -> np.ndarray:
        return self.base.logit_weights(features) @ affine_feature_map(self.shift, self.scale, features)

    def network(self) -> Network:
        """The base task's network with its first layer absorbing x = m + s x': W' = W diag(s), b' = b + W m."""
        net = self.base.network()
        (W, b), rest = net.layers[0], net.layers[1:]
        return Network(((W * self.scale, b + W @ self.shift), *rest), net.activation)

    def class_gaussians(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        gauss = self.base.class_gaussians()
        if gauss is None:
            return None
        pi, mu, v = gauss
        return pi, (mu - self.shift) / self.scale, v / self.scale**2

    def population_moments(self) -> tuple[np.ndarray, np.ndarray]:
        m, s = self.base.population_moments()
        return (m - self.shift) / self.scale, s / self.scale

    def __repr__(self) -> str:
        return f"<Standardized {self.base!r}>"


def standardize(task: Task) -> Task:
    """The task in coordinates x' = (x - m) / s with its exact population moments (DESIGN 2.6).

    Idempotent: a `Standardized` task is standardised from its base again, and a task whose
    population mean is 0 and standard deviation 1 already (e.g. `TeacherNetworkTask`) is returned
    as it is.
    """
    if isinstance(task, Standardized):
        return Standardized(task.base)
    if not isinstance(task, Task):
        raise ValueError(f"task must be a synthetic Task, got {type(task).__name__}")
    m, s = task.population_moments()
    if np.array_equal(m, np.zeros(task.dim)) and np.array_equal(s, np.ones(task.dim)):
        return task
    return Standardized(task)
