"""The target laws of DESIGN 2.2 with their exact conditional moments; each registers itself.

A law sees x through the true BCP vector p = p(x) and, for label-based laws, the label y ~ Cat(p)
drawn with x. Writing C_y = diag(p) - p p^T:

    spec                    t                                   Cov(t | x)
    onehot                  e_y                                 C_y                        (E6)
    bcp                     p                                   0
    dirichlet:ALPHA         Dir(alpha p)                        C_y / (1 + alpha)          (E8)
    additive:NU             p + eps, eps ~ N(0, nu I)           nu I                       (E7)
    tangent:NU              p + eps - mean(eps) 1               nu (I - 1 1^T / K)
    clipped:NU              clip(p + eps, 0, 1) renormalised    numerical only (biased)
    temperature:TAU         softmax(log p / tau)                0  (biased unless tau = 1)
    smoothing:EPS           (1 - eps) e_y + eps / K             (1 - eps)^2 C_y

The composites (mixture, mc) live in `composite`, teachers of x in `function`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from synthetic.validation import in_interval, nonnegative, positive

from . import kernels
from .base import CovForm, Teacher, check_p, label_cov, zeros_cov
from .registry import register_law

__all__ = ["OneHot", "BCP", "Dirichlet", "Additive", "AdditiveTangent", "Clipped", "Temperature", "Smoothing"]


@register_law("onehot")
class OneHot(Teacher):
    """t = e_y, the label drawn with x. Unbiased, Cov = C_y (E6)."""

    uses_label, _needs_rng = True, False
    reads_p, torch_form = False, True

    def _sample(self, p, y, rng):
        return np.eye(p.shape[-1])[y]

    def _draw_torch(self, p, y, generator, x, num_classes, dtype):
        return torch.nn.functional.one_hot(y, num_classes).to(dtype)

    def _cov(self, p):
        return label_cov(p)

    def _label_cross_cov(self, p):
        return label_cov(p)

    def _cov_form(self):
        return CovForm({"label": 1.0}, "E6")

    def _cross_form(self):
        return CovForm({"label": 1.0}, "E6")


@register_law("bcp")
class BCP(Teacher):
    """t = p(x), the exact Bayes class probabilities. Deterministic, Cov = 0 (Prop. 2)."""

    stochastic = False
    torch_form = True

    def _sample(self, p, y, rng):
        return p.copy()

    def _draw_torch(self, p, y, generator, x, num_classes, dtype):
        return p.to(dtype)

    def _cov(self, p):
        return zeros_cov(p)

    def _cov_form(self):
        return CovForm({}, "Prop. 2")


@register_law("dirichlet", params=("alpha",))
class Dirichlet(Teacher):
    """t ~ Dir(alpha p(x)). Unbiased, Cov = C_y / (1 + alpha) (E8).

    Tends to onehot in law as alpha -> 0 and to bcp as alpha -> inf. Sampling works in log space
    (`kernels.dirichlet`): shape parameters alpha p_k of 1e-40 give valid (one-hot-like) rows, never NaN.

    Args:
        alpha: concentration, > 0.
    """

    def __init__(self, alpha: float) -> None:
        self.alpha = positive("alpha", alpha)

    def _sample(self, p, y, rng):
        return kernels.dirichlet(self.alpha * p, rng)

    def _cov(self, p):
        return label_cov(p) / (1.0 + self.alpha)

    def _cov_form(self):
        return CovForm({"label": 1.0 / (1.0 + self.alpha)}, "E8")


@register_law("additive", params=("nu",))
class Additive(Teacher):
    """t = p + eps, eps ~ N(0, nu I_K): the paper's noise model. Unbiased, Cov = nu I (E7).

    t may leave the simplex and sum(t) != 1; (E1) stays defined. p must still be on the simplex.

    Args:
        nu: per-entry noise variance, >= 0.
    """

    sums_to_one = False

    def __init__(self, nu: float) -> None:
        self.nu = nonnegative("nu", nu)
        self.stochastic = self.nu > 0

    def _noise(self, shape: tuple[int, int], rng) -> np.ndarray:
        return math.sqrt(self.nu) * rng.standard_normal(shape) if self.nu > 0 else np.zeros(shape)

    def _sample(self, p, y, rng):
        return p + self._noise(p.shape, rng)

    def _cov(self, p):
        return np.broadcast_to(self.nu * np.eye(p.shape[1]), (p.shape[0], p.shape[1], p.shape[1])).copy()

    def _cov_form(self):
        return CovForm({"identity": self.nu}, "E7")


@register_law("tangent", params=("nu",), aliases=("additive_tangent",))
class AdditiveTangent(Additive):
    """t = p + eps - mean_k(eps) 1: additive noise projected on the tangent space, so sum(t) = 1.

    Unbiased, Cov = nu (I - 1 1^T / K). Entries may be negative.

    Args:
        nu: per-entry variance of eps before the projection, >= 0.
    """

    sums_to_one = True

    def _sample(self, p, y, rng):
        eps = self._noise(p.shape, rng)
        return p + eps - eps.mean(axis=-1, keepdims=True)

    def _cov(self, p):
        k = p.shape[1]
        return np.broadcast_to(self.nu * (np.eye(k) - 1.0 / k), (p.shape[0], k, k)).copy()

    def _cov_form(self):
        return CovForm({"tangent": self.nu}, "tangent")


@register_law("clipped", params=("nu",))
class Clipped(Additive):
    """t = c / sum(c), c = clip(p + eps, 0, 1), eps ~ N(0, nu I), given sum(c) > 0. **Biased**.

    Rows whose entries all clip to 0 are redrawn, so the law is conditioned on sum(c) > 0.
    The moments have no closed form: `mean` and `cov` are **numerical**, by randomised quasi-Monte
    Carlo on a fixed scrambled Sobol design (8 x 4096 points per K from a fixed internal seed, so the
    result is deterministic), with the linearised noise as control variate and the exact
    P(sum(c) > 0) (`kernels.clipped_moments`). `moment_errors(p)` gives their standard errors
    (a few 1e-6 for nu = 0.01). `moments_exact` is False unless nu = 0 (then t = p). Cost: about
    6 ms per row of p for K = 5.

    Args:
        nu: variance of the additive noise before clipping, >= 0.
    """

    sums_to_one = True

    def __init__(self, nu: float) -> None:
        super().__init__(nu)
        self.unbiased = self.moments_exact = self.nu == 0
        self._design: dict[int, np.ndarray] = {}
        self._last: tuple | None = None

    def _sample(self, p, y, rng):
        return kernels.clipped_sample(p, math.sqrt(self.nu), rng) if self.nu > 0 else p.copy()

    def _moments(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.nu == 0:
            return p.copy(), zeros_cov(p), np.zeros_like(p), zeros_cov(p)
        key = (p.shape, p.tobytes())
        if self._last is None or self._last[0] != key:  # `mean` then `cov` of the same p: one pass
            k = p.shape[1]
            if k not in self._design:
                self._design[k] = kernels.qmc_normals(k)
            self._last = (key, kernels.clipped_moments(p, math.sqrt(self.nu), self._design[k]))
        return self._last[1]

    def _mean(self, p):
        return self._moments(p)[0]

    def _cov(self, p):
        return self._moments(p)[1]

    def _cov_form(self):
        return CovForm({}, "Prop. 2") if self.nu == 0 else None

    def moment_errors(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standard errors of `mean(p)` `[N, K]` and `cov(p)` `[N, K, K]` (spread over QMC replicates)."""
        pf, batch = check_p(p)
        k = pf.shape[1]
        _, _, se_m, se_c = self._moments(pf)
        return se_m.reshape(*batch, k), se_c.reshape(*batch, k, k)


@register_law("temperature", params=("tau",))
class Temperature(Teacher):
    """t = softmax(log p / tau). Deterministic; biased (mis-calibrated) unless tau = 1.

    Args:
        tau: temperature, > 0 (tau > 1 flattens p, tau < 1 sharpens it).
    """

    stochastic = False
    torch_form = True

    def __init__(self, tau: float) -> None:
        self.tau = positive("tau", tau)
        self.unbiased = self.tau == 1

    def _sample(self, p, y, rng):
        return self._mean(p)

    def _draw_torch(self, p, y, generator, x, num_classes, dtype):
        return torch.softmax(torch.log(p.to(dtype)) / self.tau, dim=-1)

    def _mean(self, p):
        with np.errstate(divide="ignore"):
            z = np.log(p) / self.tau
        t = np.exp(z - z.max(axis=-1, keepdims=True))
        return t / t.sum(axis=-1, keepdims=True)

    def _cov(self, p):
        return zeros_cov(p)

    def _cov_form(self):
        return CovForm({}, "Prop. 2") if self.unbiased else None


@register_law("smoothing", params=("eps",))
class Smoothing(Teacher):
    """t = (1 - eps) e_y + eps / K (label smoothing). Biased unless eps = 0; Cov = (1 - eps)^2 C_y.

    Args:
        eps: smoothing weight in [0, 1].
    """

    uses_label, _needs_rng = True, False
    reads_p, torch_form = False, True

    def __init__(self, eps: float) -> None:
        self.eps = in_interval("eps", eps, 0.0, 1.0)
        self.unbiased, self.stochastic = self.eps == 0, self.eps < 1

    def _sample(self, p, y, rng):
        return (1.0 - self.eps) * np.eye(p.shape[-1])[y] + self.eps / p.shape[-1]

    def _draw_torch(self, p, y, generator, x, num_classes, dtype):
        return (1.0 - self.eps) * torch.nn.functional.one_hot(y, num_classes).to(dtype) + self.eps / num_classes

    def _mean(self, p):
        return (1.0 - self.eps) * p + self.eps / p.shape[-1]

    def _cov(self, p):
        return (1.0 - self.eps) ** 2 * label_cov(p)

    def _label_cross_cov(self, p):
        return (1.0 - self.eps) * label_cov(p)

    def _cov_form(self):
        return CovForm({"label": (1.0 - self.eps) ** 2}, "smoothing") if self.unbiased else None

    def _cross_form(self):
        return CovForm({"label": 1.0 - self.eps}, "smoothing")
