"""Target laws (DESIGN 2.2) with their exact conditional moments.

A teacher is the conditional law of the target t given (x, y). It sees x only through the true
BCP vector p = p(x) and, for label-based laws, the label y ~ Cat(p) drawn with x. `mean(p)` and
`cov(p)` are the moments conditional on x with y marginalised: tbar(x) = E[t | x] and Cov(t | x),
the inputs of sigma_T^2 (E4) and C_T (E5). Writing C_y = diag(p) - p p^T:

    spec                    t                                   Cov(t | x)
    onehot                  e_y                                 C_y                        (E6)
    bcp                     p                                   0
    dirichlet:ALPHA         Dir(alpha p)                        C_y / (1 + alpha)          (E8)
    additive:NU             p + eps, eps ~ N(0, nu I)           nu I                       (E7)
    tangent:NU              p + eps - mean(eps) 1               nu (I - 1 1^T / K)
    clipped:NU              clip(p + eps, 0, 1) renormalised    numerical only (biased)
    temperature:TAU         softmax(log p / tau)                0  (biased unless tau = 1)
    smoothing:EPS           (1 - eps) e_y + eps / K             (1 - eps)^2 C_y
    mixture:LAM:BASE        (1 - lam) e_y + lam t_base          see `Mixture`
    mc:S:BASE               mean of S draws of BASE             Cov_base / S               (E9)

Specs nest ("mc:4:dirichlet:5", "mixture:0.5:bcp", "mixture:0.3:mc:4:dirichlet:0.5");
`str(teacher)` is its spec and `parse_teacher(str(teacher)) == teacher`.

Targets for training (noise modes of a finite set, trained teachers) are drawn by `bkd_theory.targets`.
"""
from __future__ import annotations

import math

import numpy as np

from synthetic.validation import in_interval, nonnegative, positive, positive_int

from . import _laws
from ._laws import Teacher, check_p, label_cov, zeros_cov

__all__ = [
    "Teacher", "OneHot", "BCP", "Dirichlet", "Additive", "AdditiveTangent", "Clipped", "Temperature",
    "Smoothing", "Mixture", "MC", "parse_teacher", "TEACHER_NAMES",
]


class OneHot(Teacher):
    """t = e_y, the label drawn with x. Unbiased, Cov = C_y (E6)."""

    name, uses_label, _needs_rng = "onehot", True, False

    def _sample(self, p, y, rng):
        return np.eye(p.shape[-1])[y]

    def _cov(self, p):
        return label_cov(p)

    def _label_cross_cov(self, p):
        return label_cov(p)


class BCP(Teacher):
    """t = p(x), the exact Bayes class probabilities. Deterministic, Cov = 0 (Prop. 2)."""

    name, stochastic = "bcp", False

    def _sample(self, p, y, rng):
        return p.copy()

    def _cov(self, p):
        return zeros_cov(p)


class Dirichlet(Teacher):
    """t ~ Dir(alpha p(x)). Unbiased, Cov = C_y / (1 + alpha) (E8).

    Tends to onehot in law as alpha -> 0 and to bcp as alpha -> inf. Sampling works in log space
    (`_laws.dirichlet`): shape parameters alpha p_k of 1e-40 give valid (one-hot-like) rows, never NaN.

    Args:
        alpha: concentration, > 0.
    """

    name = "dirichlet"

    def __init__(self, alpha: float) -> None:
        self.alpha = positive("alpha", alpha)

    def _params(self):
        return (self.alpha,)

    def _sample(self, p, y, rng):
        return _laws.dirichlet(self.alpha * p, rng)

    def _cov(self, p):
        return label_cov(p) / (1.0 + self.alpha)


class Additive(Teacher):
    """t = p + eps, eps ~ N(0, nu I_K): the paper's noise model. Unbiased, Cov = nu I (E7).

    t may leave the simplex and sum(t) != 1; (E1) stays defined. p must still be on the simplex.

    Args:
        nu: per-entry noise variance, >= 0.
    """

    name, sums_to_one = "additive", False

    def __init__(self, nu: float) -> None:
        self.nu = nonnegative("nu", nu)
        self.stochastic = self.nu > 0

    def _params(self):
        return (self.nu,)

    def _noise(self, shape: tuple[int, int], rng) -> np.ndarray:
        return math.sqrt(self.nu) * rng.standard_normal(shape) if self.nu > 0 else np.zeros(shape)

    def _sample(self, p, y, rng):
        return p + self._noise(p.shape, rng)

    def _cov(self, p):
        return np.broadcast_to(self.nu * np.eye(p.shape[1]), (p.shape[0], p.shape[1], p.shape[1])).copy()


class AdditiveTangent(Additive):
    """t = p + eps - mean_k(eps) 1: additive noise projected on the tangent space, so sum(t) = 1.

    Unbiased, Cov = nu (I - 1 1^T / K). Entries may be negative.

    Args:
        nu: per-entry variance of eps before the projection, >= 0.
    """

    name, sums_to_one = "tangent", True

    def _sample(self, p, y, rng):
        eps = self._noise(p.shape, rng)
        return p + eps - eps.mean(axis=-1, keepdims=True)

    def _cov(self, p):
        k = p.shape[1]
        return np.broadcast_to(self.nu * (np.eye(k) - 1.0 / k), (p.shape[0], k, k)).copy()


class Clipped(Additive):
    """t = c / sum(c), c = clip(p + eps, 0, 1), eps ~ N(0, nu I), given sum(c) > 0. **Biased**.

    Rows whose entries all clip to 0 are redrawn, so the law is conditioned on sum(c) > 0.
    The moments have no closed form: `mean` and `cov` are **numerical**, by randomised quasi-Monte
    Carlo on a fixed scrambled Sobol design (8 x 4096 points per K from a fixed internal seed, so the
    result is deterministic), with the linearised noise as control variate and the exact
    P(sum(c) > 0) (`_laws.clipped_moments`). `moment_errors(p)` gives their standard errors
    (a few 1e-6 for nu = 0.01). `moments_exact` is False unless nu = 0 (then t = p). Cost: about
    6 ms per row of p for K = 5.

    Args:
        nu: variance of the additive noise before clipping, >= 0.
    """

    name, sums_to_one = "clipped", True

    def __init__(self, nu: float) -> None:
        super().__init__(nu)
        self.unbiased = self.moments_exact = self.nu == 0
        self._design: dict[int, np.ndarray] = {}
        self._last: tuple | None = None

    def _sample(self, p, y, rng):
        return _laws.clipped_sample(p, math.sqrt(self.nu), rng) if self.nu > 0 else p.copy()

    def _moments(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.nu == 0:
            return p.copy(), zeros_cov(p), np.zeros_like(p), zeros_cov(p)
        key = (p.shape, p.tobytes())
        if self._last is None or self._last[0] != key:  # `mean` then `cov` of the same p: one pass
            k = p.shape[1]
            if k not in self._design:
                self._design[k] = _laws.qmc_normals(k)
            self._last = (key, _laws.clipped_moments(p, math.sqrt(self.nu), self._design[k]))
        return self._last[1]

    def _mean(self, p):
        return self._moments(p)[0]

    def _cov(self, p):
        return self._moments(p)[1]

    def moment_errors(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standard errors of `mean(p)` `[N, K]` and `cov(p)` `[N, K, K]` (spread over QMC replicates)."""
        pf, batch = check_p(p)
        k = pf.shape[1]
        _, _, se_m, se_c = self._moments(pf)
        return se_m.reshape(*batch, k), se_c.reshape(*batch, k, k)


class Temperature(Teacher):
    """t = softmax(log p / tau). Deterministic; biased (mis-calibrated) unless tau = 1.

    Args:
        tau: temperature, > 0 (tau > 1 flattens p, tau < 1 sharpens it).
    """

    name, stochastic = "temperature", False

    def __init__(self, tau: float) -> None:
        self.tau = positive("tau", tau)
        self.unbiased = self.tau == 1

    def _params(self):
        return (self.tau,)

    def _sample(self, p, y, rng):
        return self._mean(p)

    def _mean(self, p):
        with np.errstate(divide="ignore"):
            z = np.log(p) / self.tau
        t = np.exp(z - z.max(axis=-1, keepdims=True))
        return t / t.sum(axis=-1, keepdims=True)

    def _cov(self, p):
        return zeros_cov(p)


class Smoothing(Teacher):
    """t = (1 - eps) e_y + eps / K (label smoothing). Biased unless eps = 0; Cov = (1 - eps)^2 C_y.

    Args:
        eps: smoothing weight in [0, 1].
    """

    name, uses_label, _needs_rng = "smoothing", True, False

    def __init__(self, eps: float) -> None:
        self.eps = in_interval("eps", eps, 0.0, 1.0)
        self.unbiased, self.stochastic = self.eps == 0, self.eps < 1

    def _params(self):
        return (self.eps,)

    def _sample(self, p, y, rng):
        return (1.0 - self.eps) * np.eye(p.shape[-1])[y] + self.eps / p.shape[-1]

    def _mean(self, p):
        return (1.0 - self.eps) * p + self.eps / p.shape[-1]

    def _cov(self, p):
        return (1.0 - self.eps) ** 2 * label_cov(p)

    def _label_cross_cov(self, p):
        return (1.0 - self.eps) * label_cov(p)


def _base(base: Teacher | str) -> Teacher:
    if not isinstance(base, (Teacher, str)):
        raise ValueError(f"base must be a Teacher or a teacher spec string, got {base!r}")
    return parse_teacher(base)


class Mixture(Teacher):
    """t = (1 - lam) e_y + lam t_b: the KD objective, t_b a draw of `base` given the same (x, y).

    tbar = (1 - lam) p + lam tbar_b. With X = Cov(e_y, t_b | x) (non-zero when the base reads y,
    e.g. onehot or smoothing):
        Cov(t | x) = (1 - lam)^2 C_y + lam^2 Cov_b + lam (1 - lam) (X + X^T).
    Unbiased iff lam = 0 or the base is unbiased. The authors' code calls lam `alpha`.

    Args:
        lam: weight of the teacher, in [0, 1].
        base: the teacher (a `Teacher` or a spec string).
    """

    name, uses_label = "mixture", True

    def __init__(self, lam: float, base: Teacher | str) -> None:
        self.lam = in_interval("lam", lam, 0.0, 1.0)
        self.base = b = _base(base)
        self.unbiased, self.stochastic = self.lam == 0 or b.unbiased, self.lam < 1 or b.stochastic
        self.sums_to_one, self.moments_exact = b.sums_to_one, b.moments_exact

    @property
    def _needs_rng(self) -> bool:
        return self.base._needs_rng

    def _params(self):
        return (self.lam, self.base)

    def _sample(self, p, y, rng):
        return (1.0 - self.lam) * np.eye(p.shape[-1])[y] + self.lam * self.base._sample(p, y, rng)

    def _mean(self, p):
        return (1.0 - self.lam) * p + self.lam * self.base._mean(p)

    def _cov(self, p):
        lam, x = self.lam, self.base._label_cross_cov(p)
        cross = x + np.swapaxes(x, -1, -2)
        return (1 - lam) ** 2 * label_cov(p) + lam**2 * self.base._cov(p) + lam * (1 - lam) * cross

    def _label_cross_cov(self, p):
        return (1.0 - self.lam) * label_cov(p) + self.lam * self.base._label_cross_cov(p)


class MC(Teacher):
    """t = (1/S) sum_s t_s: the mean of S conditionally independent draws of `base` given x (E9).

    Models a Bayesian teacher's Monte Carlo predictive. For a label-based base each draw uses its
    own label y_s ~ Cat(p), not the observed y, so the draws are i.i.d. given x and t carries no
    information on y: tbar = tbar_b, Cov = Cov_b / S, Cov(e_y, t | x) = 0.

    Args:
        S: number of draws, an integer >= 1.
        base: the teacher (a `Teacher` or a spec string).
    """

    name = "mc"

    def __init__(self, S: int, base: Teacher | str) -> None:  # noqa: N803 (the paper's symbol)
        self.S = positive_int("S", S)
        self.base = b = _base(base)
        self.unbiased, self.stochastic = b.unbiased, b.stochastic
        self.sums_to_one, self.moments_exact = b.sums_to_one, b.moments_exact

    def _params(self):
        return (self.S, self.base)

    def _sample(self, p, y, rng):
        m, k = p.shape
        rep = np.repeat(p, self.S, axis=0)  # [M * S, K]; draw s of row m sits at m * S + s
        ys = None
        if self.base.uses_label:  # each draw gets its own label y_s ~ Cat(p)
            ys = _laws.categorical(rep, rng) if self.stochastic else np.zeros(rep.shape[0], np.int64)
        return self.base._sample(rep, ys, rng).reshape(m, self.S, k).mean(axis=1)

    def _mean(self, p):
        return self.base._mean(p)

    def _cov(self, p):
        return self.base._cov(p) / self.S


_SIMPLE = {"onehot": OneHot, "bcp": BCP}
_ONE_PARAM = {
    "dirichlet": Dirichlet, "additive": Additive, "tangent": AdditiveTangent, "additive_tangent": AdditiveTangent,
    "clipped": Clipped, "temperature": Temperature, "smoothing": Smoothing,
}
TEACHER_NAMES = (*_SIMPLE, "dirichlet", "additive", "tangent", "clipped", "temperature", "smoothing", "mixture", "mc")


def _number(text: str, name: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"teacher spec {spec!r}: {name} must be a number, got {text!r}") from None


def parse_teacher(spec: str | Teacher) -> Teacher:
    """Build a teacher from its spec (DESIGN 5); a `Teacher` is returned unchanged.

    Grammar: "onehot" | "bcp" | NAME ":" NUMBER (NAME one of dirichlet, additive, tangent (alias
    additive_tangent), clipped, temperature, smoothing) | "mc:" S ":" SPEC | "mixture:" LAM ":" SPEC.
    Names are case-insensitive. Unknown names, wrong arity and bad numbers raise `ValueError`.
    """
    if isinstance(spec, Teacher):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"teacher must be a Teacher or a spec string, got {spec!r}")
    parts = [s.strip() for s in spec.strip().split(":")]
    name = parts[0].lower()
    if name in _SIMPLE:
        if len(parts) != 1:
            raise ValueError(f"teacher spec {spec!r}: {name!r} takes no parameters")
        return _SIMPLE[name]()
    if name in _ONE_PARAM:
        if len(parts) != 2:
            raise ValueError(f"teacher spec {spec!r}: {name!r} takes exactly one parameter, e.g. '{name}:0.1'")
        return _ONE_PARAM[name](_number(parts[1], name, spec))
    if name in ("mc", "mixture"):
        if len(parts) < 3:
            raise ValueError(f"teacher spec {spec!r}: {name!r} needs a number and a base, e.g. '{name}:4:dirichlet:5'")
        base = parse_teacher(":".join(parts[2:]))
        if name == "mc":
            return MC(positive_int("S", _number(parts[1], "S", spec)), base)
        return Mixture(_number(parts[1], "lam", spec), base)
    raise ValueError(f"teacher spec {spec!r}: unknown teacher {parts[0]!r}; known: {', '.join(TEACHER_NAMES)}")
