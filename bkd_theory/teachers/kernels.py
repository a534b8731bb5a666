"""Numerical kernels of the target laws (DESIGN 2.2).

- `categorical`: labels y ~ Cat(p), one per row, by inverse CDF.
- `dirichlet`: t ~ Dir(a) row-wise, sampled in log space so that tiny shapes (a_k = 1e-40, or
  smaller) never give NaN, with rows on the simplex.
- `clipped_sample` / `clipped_moments`: the clipped additive law and its moments by randomised
  quasi-Monte Carlo (the law has no closed form).

The kernels expect validated float64 arrays `[M, K]`.
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri
from scipy.stats import qmc

from ..rng import stream
from ..stats import mean_se


def categorical(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return labels `[M]` int64 with y_m ~ Cat(p_m); classes with p_k = 0 are never drawn.

    Args:
        p: probability vectors `[M, K]` (non-negative, rows summing to 1 up to rounding).
        rng: source of the uniforms (one per row).
    """
    cdf = np.cumsum(p, axis=-1)
    cdf = cdf / cdf[:, -1:]  # last entry exactly 1, so u in [0, 1) never falls past it
    u = rng.random(p.shape[0])
    return (cdf < u[:, None]).sum(axis=-1).astype(np.int64)


def dirichlet(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return t `[M, K]` with rows t_m ~ Dir(a_m), computed from log-gamma variates.

    Gamma variates with shape a < 1 underflow to 0 for tiny a (then 0/0 = NaN after normalising).
    Here log G is sampled directly: for a >= 1 it is log of a Gamma(a) draw; for a < 1 the
    Marsaglia-Tsang boost G_a = G_{a+1} U^{1/a} gives log G_a = log G_{a+1} + log(U)/a, which
    stays finite down to a ~ 1e-300. Rows are normalised with logsumexp. Entries with a_k = 0 are
    exactly 0. If every entry of a row overflows to -inf (all shapes below ~1e-306), the law is
    one-hot to machine precision and the row is put at the entry with the largest log G, i.e. the
    smallest log(-log U_k) - log a_k.

    Args:
        a: shape parameters `[M, K]`, >= 0, with at least one positive entry per row.
        rng: source of the gamma and uniform variates.

    Returns:
        `[M, K]` float64, entries in [0, 1], rows summing to 1 up to rounding (~1e-16).
    """
    pos = a > 0
    small = pos & (a < 1)
    shape = np.where(small, a + 1.0, np.where(pos, a, 1.0))
    log_g = np.log(rng.standard_gamma(shape))
    log_u = np.log1p(-rng.random(a.shape))  # log U with U in (0, 1]
    safe_a = np.where(pos, a, 1.0)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_g = log_g + np.where(small, log_u / safe_a, 0.0)
        log_g = np.where(pos, log_g, -np.inf)
        dead = ~np.isfinite(log_g.max(axis=-1))
        t = np.exp(log_g - logsumexp(np.where(dead[:, None], 0.0, log_g), axis=-1, keepdims=True))
        if np.any(dead):
            w = np.where(pos, np.log(-log_u) - np.log(safe_a), np.inf)
            winner = np.argmin(w[dead], axis=-1)
            t[dead] = np.eye(a.shape[1])[winner]
    return t / t.sum(axis=-1, keepdims=True)


def clipped_sample(p: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Return t = c / sum(c), c = clip(p + sigma Z, 0, 1), Z ~ N(0, I), conditioned on sum(c) > 0.

    Rows whose entries all clip to 0 are redrawn (rejection); that event has probability
    prod_k Phi(-p_k / sigma) < 1/2 per row, so the loop ends quickly.
    """
    t = np.empty_like(p)
    todo = np.arange(p.shape[0])
    while todo.size:
        c = np.clip(p[todo] + sigma * rng.standard_normal((todo.size, p.shape[1])), 0.0, 1.0)
        s = c.sum(axis=-1)
        ok = s > 0
        t[todo[ok]] = c[ok] / s[ok, None]
        todo = todo[~ok]
    return t


# Randomised QMC design for `clipped_moments`: REPLICATES independent scrambles of a Sobol net
# of 2**LOG2_POINTS points each, from a fixed internal seed (`rng.KEYS["teacher.clipped_design"]`).
REPLICATES = 8
LOG2_POINTS = 12
_QMC_SEED = 2024
_CHUNK_ELEMENTS = 1_000_000


def qmc_normals(k: int) -> np.ndarray:
    """Return the fixed standard-normal design `[REPLICATES, 2**LOG2_POINTS, K]` (deterministic)."""
    out = np.empty((REPLICATES, 2**LOG2_POINTS, k))
    for r in range(REPLICATES):
        sob = qmc.Sobol(d=k, scramble=True, rng=stream(_QMC_SEED, "teacher.clipped_design", k, r))
        u = sob.random_base2(LOG2_POINTS)
        out[r] = ndtri(np.clip(u, 1e-16, 1.0 - 1e-16))
    return out


def clipped_moments(
    p: np.ndarray, sigma: float, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and covariance of the clipped law (see `clipped_sample`) by randomised QMC.

    With d = (t - p) 1{S > 0}, S = sum(c), and the linearisation L = sigma (Z - p sum(Z)) of t - p
    (zero mean, known covariance Sigma_L = sigma^2 (I - p 1^T)(I - 1 p^T)) as control variate:
        A = E[d - L],  B = E[d d^T - L L^T] + Sigma_L,  P = P(S > 0) = 1 - prod_k Phi(-p_k/sigma),
        E[t | x] = p + A/P,   Cov(t | x) = B/P - (A/P)(A/P)^T.
    P is exact; A and B are averaged over the fixed design `z`. The SEs are the spread of the
    per-replicate estimates over sqrt(REPLICATES).

    Args:
        p: `[M, K]` probability vectors.
        sigma: noise standard deviation sqrt(nu) > 0.
        z: standard-normal design `[R, m, K]` from `qmc_normals`.

    Returns:
        mean `[M, K]`, cov `[M, K, K]`, se_mean `[M, K]`, se_cov `[M, K, K]`.
    """
    m_rows, k = p.shape
    reps, m, _ = z.shape
    mean, cov = np.empty((m_rows, k)), np.empty((m_rows, k, k))
    se_mean, se_cov = np.empty_like(mean), np.empty_like(cov)
    # L = sigma (I - p 1^T) z is linear in z: its design averages come from those of z and z z^T
    z_mean = z.mean(axis=1)  # [R, K]
    z_second = np.swapaxes(z, -1, -2) @ z / m  # [R, K, K]
    chunk = max(1, _CHUNK_ELEMENTS // (reps * m * k))
    for lo in range(0, m_rows, chunk):
        pc = p[lo : lo + chunk]  # [c, K]
        d = np.clip(pc[:, None, None, :] + sigma * z[None], 0.0, 1.0)  # c, then d = (t - p) 1{S > 0}
        s = d.sum(axis=-1, keepdims=True)
        ok = s > 0
        d /= np.where(ok, s, 1.0)
        d -= pc[:, None, None, :]
        d *= ok
        proj = sigma * (np.eye(k) - pc[:, :, None])  # sigma (I - p 1^T)  [c, K, K]
        proj_t = np.swapaxes(proj, -1, -2)
        a_r = d.mean(axis=2) - np.einsum("ckl,rl->crk", proj, z_mean)  # [c, R, K]
        b_r = np.swapaxes(d, -1, -2) @ d / m - proj[:, None] @ z_second[None] @ proj_t[:, None]
        sigma_l = proj @ proj_t
        prob = 1.0 - np.prod(ndtr(-pc / sigma), axis=-1)  # [c]
        shift_r = a_r / prob[:, None, None]
        cov_r = (b_r + sigma_l[:, None]) / prob[:, None, None, None] - shift_r[..., :, None] * shift_r[..., None, :]
        shift = a_r.mean(axis=1) / prob[:, None]
        cv = (b_r.mean(axis=1) + sigma_l) / prob[:, None, None] - shift[:, :, None] * shift[:, None, :]
        mean[lo : lo + chunk] = pc + shift
        cov[lo : lo + chunk] = 0.5 * (cv + np.swapaxes(cv, -1, -2))
        se_mean[lo : lo + chunk] = mean_se(shift_r, axis=1)[1]
        se_cov[lo : lo + chunk] = mean_se(cov_r, axis=1)[1]
    return mean, cov, se_mean, se_cov
