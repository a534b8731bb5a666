"""A user's own task, target law and student, defined outside the package (tests of the open bench).

Nothing here is registered: the toolkit must take them as objects and by `module:Name` on the CLI.
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_softmax
from torch import nn

from bkd_theory.teachers import Teacher, label_cov
from synthetic import Task


class HalfLabel(Teacher):
    """t = e_y or t = p with probability 1/2 each: unbiased, Cov(t | x) = C_y / 2, Cov(e_y, t | x) = C_y / 2."""

    uses_label = True

    def _sample(self, p, y, rng):
        coin = rng.random(len(p)) < 0.5
        return np.where(coin[:, None], np.eye(p.shape[1])[y], p)

    def _cov(self, p):
        return label_cov(p) / 2

    def _label_cross_cov(self, p):
        return label_cov(p) / 2


class Stripes(Task):
    """x ~ N(0, I_2); logits (2 sin x_1, 0, x_2): exact BCPs that no linear student reproduces."""

    name = "stripes"

    @property
    def num_classes(self) -> int:
        return 3

    @property
    def dim(self) -> int:
        return 2

    def sample(self, n, rng):
        x = rng.standard_normal((n, 2))
        u = rng.random(n)
        y = np.minimum((np.cumsum(self.bcp(x), axis=1) < u[:, None]).sum(axis=1), 2).astype(np.int64)
        return x, y

    def log_bcp(self, x):
        x = self._check_x(x)
        return log_softmax(np.stack([2 * np.sin(x[:, 0]), np.zeros(len(x)), x[:, 1]], axis=1), axis=1)


def small_mlp(dim: int, num_classes: int) -> nn.Module:
    """A factory the CLI calls as small_mlp(d, K)."""
    return nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, num_classes))
