"""Deterministic integration over mixtures of diagonal Gaussians in d <= 2 (DESIGN 2.1).

For a task whose classes are Gaussian, x | y=k ~ N(mu_k, diag v_k), every expectation splits as
E_x f(x) = sum_k pi_k E_{N(mu_k, diag v_k)} f(x).
- Smooth integrands (H(Y|X)) use tensor Gauss-Hermite rules per component.
- The Bayes accuracy integrand max_k pi_k N_k(x) has kinks on the decision boundaries, where
  Gauss-Hermite converges slowly. When the logits are quadratic in x the boundaries along one
  coordinate are roots of quadratics, so the inner integral over x_d is exact (normal CDFs between
  the roots) and the outer one (d = 2) is adaptive (`scipy.integrate.quad`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate
from scipy.special import ndtr

MAX_DIM = 2


def gauss_hermite_mean(
    f: Callable[[np.ndarray], np.ndarray],
    priors: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    nodes: int = 200,
) -> float:
    """Return sum_k pi_k E_{N(mu_k, diag v_k)} f(x) by a tensor Gauss-Hermite rule.

    Args:
        f: integrand, `[N, d] -> [N]`.
        priors: pi `[C]`.
        means: mu `[C, d]` (d <= 2).
        variances: v `[C, d]`.
        nodes: nodes per dimension (up to ~300 before the rule's weights underflow).
    """
    z, w = hermegauss(nodes)
    w = w / np.sqrt(2.0 * np.pi)
    d = means.shape[1]
    grid = np.stack(np.meshgrid(*([z] * d), indexing="ij"), axis=-1).reshape(-1, d)
    weights = np.prod(np.stack(np.meshgrid(*([w] * d), indexing="ij"), axis=-1).reshape(-1, d), axis=1)
    total = 0.0
    for pi, mu, v in zip(priors, means, variances):
        total += pi * float(weights @ f(mu + np.sqrt(v) * grid))
    return total


def _roots(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Real roots of a x^2 + b x + c for arrays of coefficients (numerically stable form)."""
    out = []
    for ai, bi, ci in zip(a, b, c):
        if ai == 0.0:
            if bi != 0.0:
                out.append(-ci / bi)
            continue
        disc = bi * bi - 4.0 * ai * ci
        if disc < 0.0:
            continue
        q = -0.5 * (bi + np.copysign(np.sqrt(disc), bi))
        out.append(q / ai)
        if q != 0.0:
            out.append(ci / q)
    return np.asarray(out, dtype=np.float64)


def _line_mass(priors, means, variances, a, b, c) -> float:
    """Return the integral over t of pi_{k*(t)} N(t; mu_k*, v_k*), k*(t) = argmax_k a_k t^2 + b_k t + c_k."""
    i, j = np.triu_indices(len(a), k=1)
    r = np.unique(_roots(a[i] - a[j], b[i] - b[j], c[i] - c[j]))
    r = r[np.isfinite(r)]
    edges = np.concatenate([[-np.inf], r, [np.inf]])
    if len(r) == 0:
        mids = np.zeros(1)
    else:
        mids = np.concatenate([[r[0] - 1.0], 0.5 * (r[:-1] + r[1:]), [r[-1] + 1.0]])
    k = np.argmax(a[None, :] * mids[:, None] ** 2 + b[None, :] * mids[:, None] + c[None, :], axis=1)
    sd = np.sqrt(variances[k])
    mass = ndtr((edges[1:] - means[k]) / sd) - ndtr((edges[:-1] - means[k]) / sd)
    return float(np.sum(priors[k] * mass))


def bayes_accuracy_quadratic(
    priors: np.ndarray, means: np.ndarray, variances: np.ndarray, W: np.ndarray
) -> tuple[float, float]:
    """Return (E_x max_k p_k(x), error estimate) for Gaussian classes with quadratic logits.

    Args:
        priors: pi `[K]`.
        means: class means `[K, d]`, d in {1, 2}.
        variances: class variances `[K, d]` (diagonal covariances).
        W: logit weights in quadratic features `[K, F+1]` (synthetic.features order, bias last):
            logits = W (phi(x), 1). Any gauge.
    """
    d = means.shape[1]
    if d == 1:  # phi = (x, x^2)
        return _line_mass(priors, means[:, 0], variances[:, 0], W[:, 1], W[:, 0], W[:, 2]), 0.0
    if d != 2:
        raise ValueError(f"exact Bayes accuracy needs d <= {MAX_DIM}, got d={d}")
    # phi = (x1, x2, x1^2, x1 x2, x2^2): for fixed x1 = t the logits are quadratic in x2.
    def outer(t: float) -> float:
        dens = priors * np.exp(-0.5 * (t - means[:, 0]) ** 2 / variances[:, 0]) / np.sqrt(2 * np.pi * variances[:, 0])
        a, b, c = W[:, 4], W[:, 1] + W[:, 3] * t, W[:, 0] * t + W[:, 2] * t * t + W[:, 5]
        return _line_mass(dens, means[:, 1], variances[:, 1], a, b, c)

    sd = np.sqrt(variances[:, 0])
    lo, hi = float(np.min(means[:, 0] - 12 * sd)), float(np.max(means[:, 0] + 12 * sd))
    value, err = integrate.quad(outer, lo, hi, points=np.unique(means[:, 0]), epsabs=1e-13, epsrel=1e-12, limit=500)
    return float(value), float(err)


@dataclass(frozen=True)
class SpanRule:
    """Gauss-Hermite nodes for E_x over Gaussian classes with a shared diagonal covariance (`span_rule`).

    Attributes:
        x: node inputs `[N, d]` (the conditional means E[x | node]). w: weights `[N]`, summing to 1
            up to the pruned mass. resid: Cov(x | node) `[d, d]`, the same for every node (0 when the
            span is the whole space). cls: each node's class `[N]`. u: its coordinates in the span
            `[N, r]`, with x = centres[cls] + u @ basis.T. centres: the class means `[K, d]`.
            basis: L U `[d, r]`. nodes: nodes per dimension of the rule.
    """

    x: np.ndarray
    w: np.ndarray
    resid: np.ndarray
    cls: np.ndarray
    u: np.ndarray
    centres: np.ndarray
    basis: np.ndarray
    nodes: int

    @property
    def exact_points(self) -> bool:
        """The span is the whole input space (resid = 0): the nodes integrate any function of x."""
        return bool(np.all(self.resid == 0.0))


def span_rule(priors: np.ndarray, means: np.ndarray, var: np.ndarray, W: np.ndarray, nodes: int,
              prune: float = 1e-10) -> SpanRule:
    """A Gauss-Hermite rule for E_x f over Gaussian classes with a shared diagonal covariance and
    linear logits, on the span of the logit differences (DESIGN 3, "Exact expectations").

    With x | y=k ~ N(mu_k, Sigma), Sigma = diag(var), and logits W (x, 1), p(x) depends on x only
    through B^T x, B = the columns W_j - W_K (j < K). Writing x = mu_k + L z (L = Sigma^(1/2)) and
    L B = U S V^T (U `[d, r]` orthonormal, r = rank), z = U u + z_perp with u ~ N(0, I_r) and z_perp
    independent of u. So E_x[f(p(x)) g(x)] = sum_n w_n f(p(x_n)) E[g | node n] with nodes
    x_n = mu_k + L U u_n on a tensor Gauss-Hermite grid in r dimensions, weights pi_k w(u_n), and
    E[x | node] = x_n, Cov(x | node) = L (I - U U^T) L =: resid (the same for every node). This is
    exact for any f of p times a polynomial of degree <= 2 in x (with the resid correction), and for
    every integrand when resid = 0 (r = d). Nodes whose weight is below `prune` times the largest
    are dropped (their total mass is below 1e-9 for the rules used here).
    """
    K, d = means.shape
    L = np.sqrt(np.asarray(var, dtype=np.float64))
    B = (W[:-1, :d] - W[-1, :d]).T  # [d, K-1]
    U, s, _ = np.linalg.svd(L[:, None] * B, full_matrices=False)
    U = U[:, s > 1e-12 * s.max()]
    r = U.shape[1]
    z, wz = hermegauss(nodes)
    wz = wz / np.sqrt(2.0 * np.pi)
    grid = np.stack(np.meshgrid(*([z] * r), indexing="ij"), axis=-1).reshape(-1, r)
    wgrid = np.prod(np.stack(np.meshgrid(*([wz] * r), indexing="ij"), axis=-1).reshape(-1, r), axis=1)
    keep = wgrid > prune * wgrid.max()
    grid, wgrid = grid[keep], wgrid[keep]
    basis = L[:, None] * U  # L U  [d, r]
    x = (means[:, None, :] + (grid @ basis.T)[None]).reshape(-1, d)
    w = (priors[:, None] * wgrid[None]).reshape(-1)
    resid = (L[:, None] * (np.eye(d) - U @ U.T)) * L[None, :]
    resid = 0.5 * (resid + resid.T)
    resid[np.abs(resid) < 1e-13 * max(1.0, float(L.max()) ** 2)] = 0.0
    return SpanRule(x, w, resid, np.repeat(np.arange(K), len(grid)), np.tile(grid, (K, 1)), means.copy(), basis, nodes)


def orthant_accuracy(priors: np.ndarray, means: np.ndarray, var: np.ndarray, W: np.ndarray,
                     abseps: float = 1e-9) -> tuple[float, float]:
    """E_x max_k p_k(x) for Gaussian classes with a shared diagonal covariance and linear logits.

    The Bayes classifier picks k where f_k(x) >= f_j(x) for all j; given y = k, the K - 1 logit
    differences D x + c are jointly Gaussian, so P(correct | y = k) is a multivariate normal orthant
    probability (Genz's algorithm, `scipy.stats.multivariate_normal.cdf`, error bound `abseps`).

    Returns:
        (accuracy, error bound: the integration tolerance `abseps`; the randomised QMC uses a fixed seed).
    """
    from scipy.stats import multivariate_normal

    K, d = means.shape
    Sigma = np.diag(np.asarray(var, dtype=np.float64))
    total, err = 0.0, 0.0
    for k in range(K):
        others = [j for j in range(K) if j != k]
        D = W[k, :d] - W[others, :d]  # [K-1, d]: f_k - f_j = D x + c >= 0
        c = W[k, d] - W[others, d]
        mean, cov = D @ means[k] + c, D @ Sigma @ D.T
        # P(D x + c >= 0) = P(-(D x + c) <= 0): the CDF of N(-mean, cov) at 0
        prob = multivariate_normal.cdf(np.zeros(K - 1), mean=-mean, cov=cov, allow_singular=True, abseps=abseps,
                                       releps=0.0, maxpts=500_000 * (K - 1), rng=np.random.default_rng(0))
        total += priors[k] * float(prob)
        err += priors[k] * abseps
    return total, err
