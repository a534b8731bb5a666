"""The targets of the Hinton loss at a student temperature T (E22), drawn by the data feed.

The run's objective is a teacher law (`Setup.teacher`: the given teacher with the run's lam,
`teachers.with_lam`). With `kd_temperature` set, the feed splits it into its label part and its
soft part: `soft_part` unwraps the KD mixtures, t = (1 - lam) e_y + lam t_b, nested mixtures
multiplying their weights (so `mixture:LAM:BASE` with the run's lam trains on lam x LAM; with no
mixture, lam = 1 is the pure soft loss). The feed then hands the students `KDTargets(hard, soft, T)`
with hard = (1 - lam) e_y and soft = lam t_b^(T), t_b^(T) = softmax(log t_b / T) (`students.kd`).
At T = 1 this is the same objective as the mixture's own targets (E1 is linear in t).
The soft draw consumes the teacher stream exactly as the mixture's draw does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..students.kd import temper
from ..teachers import Mixture, Teacher

__all__ = ["KDDraw", "soft_part"]


def soft_part(teacher: Teacher) -> tuple[float, Teacher]:
    """(lam, base): the weight of the soft part of the objective `teacher` and the soft teacher."""
    lam = 1.0
    while isinstance(teacher, Mixture):
        lam *= teacher.lam
        teacher = teacher.base
    return lam, teacher


class KDDraw:
    """Hard and soft KD targets of an objective `teacher` at student temperature `T` (module docstring)."""

    def __init__(self, teacher: Teacher, T: float) -> None:
        self.lam, self.base = soft_part(teacher)
        self.T = float(T)

    def split(self, soft: np.ndarray, y: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
        """(hard = (1 - lam) e_y, soft = lam t^(T)) `[..., K]` from the soft teacher's draws `soft`."""
        return (1.0 - self.lam) * np.eye(K)[y], self.lam * temper(soft, self.T)

    def draw(self, p: np.ndarray, y: np.ndarray, rng: Any, x: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Fresh targets for (p, y, x) `[N, K]`: the soft teacher's draw from `rng`, then `split`."""
        return self.split(self.base.sample(p, y, rng, x=x), y, p.shape[-1])
