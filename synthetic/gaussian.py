"""Gaussian class-conditional tasks: shared isotropic covariance (linear logits) and per-class
diagonal covariances (quadratic logits) (DESIGN 3)."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import validation
from .base import Task, register_task
from .features import feature_kind, num_features


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _means(means: Any) -> np.ndarray:
    mu = validation.finite_array("means", means, ndim=2)
    if mu.shape[0] < 2:
        raise ValueError(f"means must have K >= 2 rows (one per class), got K={mu.shape[0]}")
    if mu.shape[1] < 1:
        raise ValueError("means must have d >= 1 columns")
    return mu


def _priors(priors: Any, K: int) -> np.ndarray:
    if priors is None:
        return np.full(K, 1.0 / K)
    pi = validation.finite_array("priors", priors, ndim=1)
    if pi.shape != (K,):
        raise ValueError(f"priors must have shape ({K},) to match means, got {pi.shape}")
    pi = validation.probability_vectors("priors", pi)
    if np.any(pi <= 0):
        raise ValueError(f"priors must be > 0 (a class of prior 0 has log-prior -inf), got {pi.tolist()}")
    return pi / pi.sum()


def _overflow_safe(log_p: np.ndarray, x: np.ndarray, a: np.ndarray | None, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """`log_p` `[N, K]` with its non-finite rows recomputed from the logits c_k + b_k x - a_k x^2 / 2.

    Rows whose logits overflow (|x| ~ 1e155 squares to inf) are computed at scale s = max_j |x_j|:
    with u = x / s, the logits are s^2 m_k, m_k = c_k / s^2 + b_k u / s - a_k u^2 / 2 (s m_k for
    linear logits, `a` None), and log p_k = s^2 (m_k - max m) - log(#ties): the limit the exact
    value rounds to in float64. Rows that were finite are returned unchanged, bit for bit.
    """
    bad = ~np.all(np.isfinite(log_p), axis=1)
    if not bad.any():
        return log_p
    xb = x[bad]
    scale = np.max(np.abs(xb), axis=1)[:, None]
    u = xb / scale
    with np.errstate(over="ignore", invalid="ignore"):  # scale^2 may be inf; inf * 0 is masked below
        if a is None:
            power, m = scale, c / scale + u @ b.T
        else:
            power, m = scale**2, c / scale**2 + (u @ b.T) / scale - 0.5 * (u**2) @ a.T
        d = m - m.max(axis=1, keepdims=True)
        z = np.where(d == 0.0, 0.0, power * d)
    out = np.array(log_p, dtype=np.float64)
    out[bad] = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return out


def _triangle_means() -> np.ndarray:
    """Return the means 1.5 (cos 2 pi k/3, sin 2 pi k/3), k = 0, 1, 2, as `[3, 2]`."""
    angle = 2.0 * np.pi * np.arange(3) / 3.0
    return 1.5 * np.stack([np.cos(angle), np.sin(angle)], axis=1)

class _GaussianClasses(Task):
    """Shared by tasks with x | y=k ~ N(mu_k, diag v_k): K and d from the means, and sampling."""

    means: np.ndarray  # [K, d]

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw y ~ pi, then x = mu_y + sqrt(v_y) * z with z ~ N(0, I). Returns x `[n, d]`, y `[n]`."""
        n = validation.positive_int("n", n)
        priors, means, variances = self.class_gaussians()
        y = rng.choice(len(priors), size=n, p=priors).astype(np.int64)
        x = means[y] + np.sqrt(variances)[y] * rng.standard_normal((n, means.shape[1]))
        return x, y


class GaussianMixture(_GaussianClasses):
    """Gaussian classes with a shared isotropic covariance: x | y=k ~ N(mu_k, s^2 I), linear logits.

    log p(y=k | x) = log_softmax_k(mu_k . x / s^2 - ||mu_k||^2 / (2 s^2) + log pi_k), so the linear
    softmax student is realizable with W*_k = mu_k / s^2, b*_k = -||mu_k||^2/(2 s^2) + log pi_k
    (DESIGN 3), and so is the quadratic-feature student (zero quadratic weights).

    Args:
        means: class means `[K, d]`, K >= 2, finite.
        var: the shared variance s^2 > 0.
        priors: class priors `[K]`, positive, summing to 1 (default: equal).
        name: the task's name.
    """

    def __init__(self, means: Any, var: float, priors: Any = None, name: str = "gaussian-mixture") -> None:
        mu = _means(means)
        self.means = _readonly(mu)
        self.var = validation.positive("var", var)
        self.priors = _readonly(_priors(priors, mu.shape[0]))
        self.name = str(name)

    @classmethod
    def paper(cls) -> GaussianMixture:
        """The authors' synthetic task: K=5, d=30, s^2=2.5, equal priors.

        Means are `numpy.random.seed(2); numpy.random.choice([4, 5, 6], size=(5, 30))` (the legacy
        global generator). `RandomState(2)` draws the same numbers without touching global state.
        """
        means = np.random.RandomState(2).choice([4, 5, 6], size=(5, 30)).astype(np.float64)
        return cls(means, 2.5, name="paper")

    @classmethod
    def triangle(cls) -> GaussianMixture:
        """A well-conditioned preset (DESIGN 2.6): K=3, d=2, mu_k = 1.5 (cos 2pi k/3, sin 2pi k/3), s^2=1."""
        return cls(_triangle_means(), 1.0, name="triangle")

    def log_bcp(self, x: np.ndarray) -> np.ndarray:
        x = self._check_x(x)
        W = self.logit_weights("linear")
        with np.errstate(over="ignore", invalid="ignore"):
            log_p = self._normalise(x @ W[:, :-1].T + W[:, -1])
        return _overflow_safe(log_p, x, None, W[:, :-1], W[:, -1])

    def logit_weights(self, features: str = "linear") -> np.ndarray:
        K, d = self.means.shape
        W = np.zeros((K, num_features(d, features) + 1))
        W[:, :d] = self.means / self.var
        W[:, -1] = -np.sum(self.means**2, axis=1) / (2.0 * self.var) + np.log(self.priors)
        return W

    def class_gaussians(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.priors, self.means, np.full(self.means.shape, self.var)


class HeteroscedasticGaussian(_GaussianClasses):
    """Gaussian classes with per-class diagonal covariances: x | y=k ~ N(mu_k, diag v_k).

    The logits are quadratic in x,
    log pi_k - sum_j [(x_j - mu_kj)^2 / (2 v_kj) + log(v_kj) / 2],
    so the quadratic-feature linear student is realizable (DESIGN 3) with weights mu_kj / v_kj on
    x_j, -1 / (2 v_kj) on x_j^2, 0 on x_i x_j (i < j), and bias
    log pi_k - sum_j [mu_kj^2 / (2 v_kj) + log(v_kj) / 2]. The linear-feature student is
    realizable only when all classes share the same variances.

    Args:
        means: class means `[K, d]`, K >= 2, finite.
        variances: per-class variances, `[K]` (isotropic) or `[K, d]` (diagonal), all > 0.
        priors: class priors `[K]` (default: equal).
        name: the task's name.
    """

    def __init__(self, means: Any, variances: Any, priors: Any = None, name: str = "heteroscedastic") -> None:
        mu = _means(means)
        K, d = mu.shape
        v = validation.finite_array("variances", variances)
        if v.shape == (K,):
            v = np.repeat(v[:, None], d, axis=1)
        if v.shape != (K, d):
            raise ValueError(f"variances must have shape ({K},) or ({K}, {d}) to match means, got {v.shape}")
        if np.any(v <= 0):
            raise ValueError(f"variances must be > 0, got min {v.min()!r}")
        self.means = _readonly(mu)
        self.variances = _readonly(v)
        self.priors = _readonly(_priors(priors, K))
        self.name = str(name)

    @classmethod
    def default(cls) -> HeteroscedasticGaussian:
        """The "hetero" preset: K=3, d=2, triangle means, variances (0.5, 0.5), (1, 1), (2, 0.7)."""
        return cls(_triangle_means(), [[0.5, 0.5], [1.0, 1.0], [2.0, 0.7]], name="hetero")

    def log_bcp(self, x: np.ndarray) -> np.ndarray:
        x = self._check_x(x)
        v, mu = self.variances, self.means
        with np.errstate(over="ignore", invalid="ignore"):
            logits = (np.log(self.priors) - 0.5 * np.sum(np.log(v), axis=1)
                      - 0.5 * np.sum((x[:, None, :] - mu[None]) ** 2 / v[None], axis=2))
            log_p = self._normalise(logits)
        c = np.log(self.priors) - 0.5 * np.sum(np.log(v), axis=1) - 0.5 * np.sum(mu**2 / v, axis=1)
        return _overflow_safe(log_p, x, 1.0 / v, mu / v, c)

    def logit_weights(self, features: str = "linear") -> np.ndarray:
        K, d = self.means.shape
        features = feature_kind(features)
        v, mu = self.variances, self.means
        bias = np.log(self.priors) - np.sum(mu**2 / (2.0 * v) + 0.5 * np.log(v), axis=1)
        if features == "linear":
            if not np.all(v == v[0]):
                raise ValueError(
                    f"task {self.name!r} is not realizable by a linear softmax student with linear features "
                    "(per-class variances differ: the logits are quadratic); use features='quadratic'"
                )
            return np.concatenate([mu / v, bias[:, None]], axis=1)
        W = np.zeros((K, num_features(d, "quadratic") + 1))
        W[:, :d] = mu / v
        i, j = np.triu_indices(d)
        diag = np.flatnonzero(i == j)
        W[:, d + diag] = -1.0 / (2.0 * v)
        W[:, -1] = bias
        return W

    def class_gaussians(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.priors, self.means, self.variances


register_task("paper")(GaussianMixture.paper)
register_task("triangle")(GaussianMixture.triangle)
register_task("hetero")(HeteroscedasticGaussian.default)
