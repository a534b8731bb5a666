"""Sample moments of target laws against their exact moments (shared by test_teachers and the contracts).

Statistical checks compare sample moments of t given a fixed p with `mean(p)` and `cov(p)`:
|est - exact| <= 4 SE per entry, the SE estimated from the same samples (STYLE 4).
"""
from __future__ import annotations

import numpy as np

from bkd_theory import teachers as T
from bkd_theory.rng import generator
from cases import LAW_EXAMPLES

P3 = np.array([0.6, 0.3, 0.1])
P5 = np.array([0.5, 0.25, 0.15, 0.099, 0.001])  # a tiny entry
PS = {"K3": P3, "K5tiny": P5}
ALL_EXAMPLES = [spec for specs in LAW_EXAMPLES.values() for spec in specs]
STOCHASTIC = [s for s in ALL_EXAMPLES if T.parse_teacher(s).stochastic]
DETERMINISTIC = [s for s in ALL_EXAMPLES if not T.parse_teacher(s).stochastic]


def moment_z(t: np.ndarray, mean: np.ndarray, cov: np.ndarray, extra_se: tuple = (0.0, 0.0)):
    """z-scores of the sample mean `[K]` and covariance `[K, K]` of draws `t [n, K]`.

    SE of a mean entry: sample std / sqrt(n). Covariance: the sample mean of the products
    (t_i - mu_i)(t_j - mu_j), mu = `mean` (exact), is unbiased for Cov_ij, and its SE is the std of
    the products / sqrt(n). (Centring at the sample mean instead adds an O(1/n) bias that this SE
    ignores: it fails spuriously for a Bernoulli entry whose sample frequency is ~1/2.) A wrong
    `mean` is caught by the mean check. `extra_se` adds the (independent) error of numerically
    computed exact moments.
    """
    n = t.shape[0]
    d = t - mean
    prod = d[:, :, None] * d[:, None, :]
    se_m = np.hypot(t.std(axis=0, ddof=1) / np.sqrt(n), extra_se[0])
    se_c = np.hypot(prod.std(axis=0, ddof=1) / np.sqrt(n), extra_se[1])
    return _z(t.mean(axis=0) - mean, se_m), _z(prod.mean(axis=0) - cov, se_c)


def _z(diff: np.ndarray, se: np.ndarray) -> np.ndarray:
    # SE floored at 1e-12: an entry with (numerically) zero spread must match to rounding
    return np.abs(diff) / np.maximum(se, 1e-12)


def draw(spec: str, p: np.ndarray, n: int, seed: int):
    """n draws of t given the fixed p, with labels y ~ Cat(p) from the same generator."""
    rng = generator(seed, len(p), sum(map(ord, spec)))
    teacher = T.parse_teacher(spec)
    y = rng.choice(len(p), size=n, p=p)
    return teacher, y, teacher.sample(np.tile(p, (n, 1)), y, rng)


def numerical_se(teacher: T.Teacher, p: np.ndarray) -> tuple:
    """SE of numerically computed moments (clipped, possibly nested); 0 for closed forms."""
    if isinstance(teacher, T.Clipped):
        return tuple(s[0] for s in teacher.moment_errors(p[None]))
    if isinstance(teacher, T.MC):
        se_m, se_c = numerical_se(teacher.base, p)
        return se_m, se_c / teacher.S
    if isinstance(teacher, T.Mixture):
        se_m, se_c = numerical_se(teacher.base, p)
        return teacher.lam * se_m, teacher.lam**2 * se_c
    return 0.0, 0.0


def check_moments(spec: str, p: np.ndarray, n: int, seed: int = 0) -> float:
    """Largest z-score of the sample mean, covariance and (label-based laws) Cov(e_y, t)."""
    teacher, y, t = draw(spec, p, n, seed)
    extra = numerical_se(teacher, p)
    z_m, z_c = moment_z(t, teacher.mean(p), teacher.cov(p), extra)
    z = [z_m.max(), z_c.max()]
    if teacher.uses_label:
        # Cov(e_y, t | x): mean of the products (e_y - p)(t - tbar)^T against label_cross_cov
        prod = (np.eye(len(p))[y] - p)[:, :, None] * (t - teacher.mean(p))[:, None, :]
        z.append(_z(prod.mean(0) - teacher.label_cross_cov(p), prod.std(0, ddof=1) / np.sqrt(n)).max())
    return max(z)
