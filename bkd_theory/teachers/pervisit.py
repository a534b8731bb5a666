"""A Bayesian trained teacher sampled per visit (DESIGN 2.10, E24).

With posterior samples w ~ q (VI posterior, dropout masks, Laplace draws, ensemble members) the
teacher's target at a visit of x is t = (1/S) sum_{s=1}^S p~_{w_s}(x), S fresh draws. Then

    E[t | x] = pbar(x) = E_w p~_w(x)                 (biased: pbar != p)
    Cov(t | x) = Cov_w(p~_w(x)) / S                  (the draws are i.i.d. given x)

`PerVisit` is a `Teacher` with these moments, estimated by Monte Carlo over `moment_draws` draws
from a fixed generator (so they are a repeatable function of the batch of x). In a run's finite
training set, noise mode `fresh` samples it at every visit and `frozen` draws one t per point.
Draws read only the generator handed to `sample` (the chain's teacher stream).
"""
from __future__ import annotations

import numpy as np
import torch

from synthetic import validation

from .. import rng as rng_mod
from .base import Teacher, zeros_cov

__all__ = ["PerVisit"]

#: index of the moments' Monte Carlo draws under the "teacher.posterior_draws" stream
_MOMENTS_INDEX = 2


class PerVisit(Teacher):
    """t = mean of S fresh posterior draws p~_w(x) of a trained teacher with `posterior_draws` (E24).

    Args:
        base: a trained teacher with `sample_proba(x, count, generator)` (`fitbase.TrainedTeacher`).
        draws: S >= 1 posterior draws per visit.
        moment_draws: Monte Carlo draws for `mean` and `cov` (>= 2).
        seed: seed of the moments' fixed generator.
    """

    unbiased, stochastic, needs_x, moments_exact = False, True, True, False

    def __init__(self, base: object, draws: int, *, moment_draws: int = 512, seed: int = 0) -> None:
        if not getattr(base, "posterior_draws", False):
            raise ValueError("base must be a trained teacher with posterior draws (ensemble, mc_dropout, laplace, "
                             f"vi), got {base!r}")
        self.base, self.draws = base, validation.positive_int("draws", draws)
        self.moment_draws = validation.positive_int("moment_draws", moment_draws, minimum=2)
        self.seed = validation.positive_int("seed", seed, minimum=0)
        self.num_classes, self.dim = base.num_classes, base.dim
        self.train_time = float(getattr(base, "train_time", float("nan")))

    @property
    def spec(self) -> str:
        return f"pervisit:{self.draws}:{self.base.spec}"

    def _check(self, p: np.ndarray) -> None:
        if p.shape[-1] != self.num_classes:
            raise ValueError(f"teacher {self.spec!r} has num_classes = {self.num_classes}; the task has {p.shape[-1]}")

    def _draw(self, p: np.ndarray, y: np.ndarray | None, rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
        self._check(p)
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        return self.base.sample_proba(x, self.draws, gen).mean(axis=0)

    def moments(self, x: np.ndarray, *, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(pbar(x) `[N, K]`, Cov_w(p~_w(x)) `[N, K, K]`) by Monte Carlo over `moment_draws` draws (ddof 1),
        `chunk` rows at a time from one fixed generator (memory moment_draws x chunk x K)."""
        seed = int(rng_mod.stream(self.seed, "teacher.posterior_draws", _MOMENTS_INDEX).integers(2**62))
        gen = torch.Generator().manual_seed(seed)
        means, covs = [], []
        for start in range(0, len(x), chunk):
            q = self.base.sample_proba(x[start:start + chunk], self.moment_draws, gen)
            c = q - q.mean(axis=0)
            means.append(q.mean(axis=0))
            covs.append(np.einsum("snk,snl->nkl", c, c) / (q.shape[0] - 1))
        K = self.num_classes
        return (np.concatenate(means) if means else np.zeros((0, K)),
                np.concatenate(covs) if covs else np.zeros((0, K, K)))

    def _mean_at(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        self._check(p)
        return self.moments(x)[0]

    def _cov_at(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        self._check(p)
        return self.moments(x)[1] / self.draws

    def _cross_at(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        return zeros_cov(p)

    def _sample(self, p, y, rng):  # reached only through `_draw`
        raise ValueError(f"x (the inputs) is required by teacher {self.spec!r}, a function of x")

    def _cov(self, p):
        raise ValueError(f"x (the inputs) is required by teacher {self.spec!r}, a function of x")
