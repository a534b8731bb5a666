"""Teachers built over any other teacher: the KD mixture (E20) and the Monte Carlo mean (E9).

Both work over a law of p, a teacher of x (`FunctionTeacher`, trained networks) or another
composite: they override the x-aware level of `Teacher` (`_draw`, `_mean_at`, `_cov_at`,
`_cross_at`) and hand (p, x) on to their base. `with_lam` is the one place where a run's KD weight
lam wraps a teacher in `Mixture`.
"""
from __future__ import annotations

import numpy as np
import torch

from synthetic.validation import in_interval, positive_int

from . import kernels
from .base import CovForm, Teacher, label_cov
from .registry import parse_teacher, register_law

__all__ = ["MC", "Mixture", "with_lam"]


def _base(base: Teacher | str) -> Teacher:
    if not isinstance(base, (Teacher, str)):
        raise ValueError(f"base must be a Teacher or a teacher spec string, got {base!r}")
    return parse_teacher(base)


@register_law("mixture", params=("lam", "base"))
class Mixture(Teacher):
    """t = (1 - lam) e_y + lam t_b: the KD objective, t_b a draw of `base` given the same (x, y) (E20).

    tbar = (1 - lam) p + lam tbar_b. With X = Cov(e_y, t_b | x) (non-zero when the base reads y,
    e.g. onehot or smoothing):
        Cov(t | x) = (1 - lam)^2 C_y + lam^2 Cov_b + lam (1 - lam) (X + X^T).
    Unbiased iff lam = 0 or the base is unbiased. The authors' code calls lam `alpha`.

    Args:
        lam: weight of the teacher, in [0, 1].
        base: the teacher (a `Teacher` or a spec string).
    """

    uses_label = True

    def __init__(self, lam: float, base: Teacher | str) -> None:
        self.lam = in_interval("lam", lam, 0.0, 1.0)
        self.base = b = _base(base)
        self.unbiased, self.stochastic = self.lam == 0 or b.unbiased, self.lam < 1 or b.stochastic
        self.sums_to_one, self.moments_exact, self.needs_x = b.sums_to_one, b.moments_exact, b.needs_x
        self.reads_p, self.torch_form = b.reads_p, b.torch_form

    @property
    def _needs_rng(self) -> bool:
        return self.base._needs_rng

    def _draw(self, p, y, rng, x):
        return (1.0 - self.lam) * np.eye(p.shape[-1])[y] + self.lam * self.base._draw(p, y, rng, x)

    def _draw_torch(self, p, y, generator, x, num_classes, dtype):
        soft = self.base._draw_torch(p, y, generator, x, num_classes, dtype)
        return (1.0 - self.lam) * torch.nn.functional.one_hot(y, num_classes).to(dtype) + self.lam * soft

    def _mean_at(self, p, x):
        return (1.0 - self.lam) * p + self.lam * self.base._mean_at(p, x)

    def _cov_at(self, p, x):
        lam, cross = self.lam, self.base._cross_at(p, x)
        return ((1 - lam) ** 2 * label_cov(p) + lam**2 * self.base._cov_at(p, x)
                + lam * (1 - lam) * (cross + np.swapaxes(cross, -1, -2)))

    def _cross_at(self, p, x):
        return (1.0 - self.lam) * label_cov(p) + self.lam * self.base._cross_at(p, x)

    def _sample(self, p, y, rng):  # reached only through `_draw`
        return self._draw(p, y, rng, None)

    def _cov(self, p):
        return self._cov_at(p, None)

    def _cov_form(self):
        base, cross = self.base.cov_form(), self.base._cross_form()
        if base is None or cross is None or not self.unbiased:
            return None
        lam = self.lam
        label = CovForm({"label": (1 - lam) ** 2 + 2 * lam * (1 - lam) * cross.coef.get("label", 0.0)})
        rest = CovForm({k: v for k, v in cross.coef.items() if k != "label"}).scaled(2 * lam * (1 - lam))
        return label.plus(base.scaled(lam**2)).plus(rest, tag=f"E20({base.tag})")

    def _cross_form(self):
        cross = self.base._cross_form()
        return None if cross is None else CovForm({"label": 1.0 - self.lam}).plus(cross.scaled(self.lam), tag="E20")


@register_law("mc", params=("S", "base"))
class MC(Teacher):
    """t = (1/S) sum_s t_s: the mean of S conditionally independent draws of `base` given x (E9).

    Models a Bayesian teacher's Monte Carlo predictive. For a label-based base each draw uses its
    own label y_s ~ Cat(p), not the observed y, so the draws are i.i.d. given x and t carries no
    information on y: tbar = tbar_b, Cov = Cov_b / S, Cov(e_y, t | x) = 0.

    Args:
        S: number of draws, an integer >= 1.
        base: the teacher (a `Teacher` or a spec string).
    """

    def __init__(self, S: int, base: Teacher | str) -> None:  # noqa: N803 (the paper's symbol)
        self.S = positive_int("S", S)
        self.base = b = _base(base)
        self.unbiased, self.stochastic = b.unbiased, b.stochastic
        self.sums_to_one, self.moments_exact, self.needs_x = b.sums_to_one, b.moments_exact, b.needs_x

    def _draw(self, p, y, rng, x):
        m, k = p.shape
        rep = np.repeat(p, self.S, axis=0)  # [M * S, K]; draw s of row m sits at m * S + s
        xs = None if x is None else np.repeat(x, self.S, axis=0)
        ys = None
        if self.base.uses_label:  # each draw gets its own label y_s ~ Cat(p)
            ys = kernels.categorical(rep, rng) if self.stochastic else np.zeros(rep.shape[0], np.int64)
        return self.base._draw(rep, ys, rng, xs).reshape(m, self.S, k).mean(axis=1)

    def _mean_at(self, p, x):
        return self.base._mean_at(p, x)

    def _cov_at(self, p, x):
        return self.base._cov_at(p, x) / self.S

    def _cross_at(self, p, x):
        return np.zeros((p.shape[0], p.shape[1], p.shape[1]))

    def _sample(self, p, y, rng):  # reached only through `_draw`
        return self._draw(p, y, rng, None)

    def _cov(self, p):
        return self._cov_at(p, None)

    def _cov_form(self):
        base = self.base.cov_form()
        return None if base is None else base.scaled(1.0 / self.S, tag=f"E9({base.tag})")

    def _cross_form(self):
        return CovForm({}, "")


def with_lam(teacher: Teacher, lam: float) -> Teacher:
    """The KD objective of a run with weight `lam`: `teacher` itself at lam = 1, else `Mixture(lam, teacher)`."""
    lam = in_interval("lam", lam, 0.0, 1.0)
    return teacher if lam >= 1.0 else Mixture(lam, teacher)
