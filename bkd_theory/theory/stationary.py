"""Sharp predictions near theta* (DESIGN 2.8): E17, E17' with its next-order correction, and E18.

Linearised SGD at theta* with batch b: delta_{k+1} = (I - gamma A_k) delta_k - gamma xi_k, where
A_k = (1/b) sum_i s_i H_{x_i} (s = sum_k t_k; H_x the per-sample Hessian at theta*, E[s H_x] = H)
and xi_k the mean of b gradients at theta* (covariance C/b). Its stationary second moment S solves

    H S + S H - gamma M(S) = gamma C / b,   M(S) = (1/b) E[s^2 H_x S H_x] + (1 - 1/b) H S H      (*)

- dropping gamma M(S) gives the Lyapunov equation H S + S H = gamma C / b (E17'); its trace
  identity tr(H S) = gamma tr C / (2b) gives E[F - F*] ~ tr(H S)/2 = gamma sigma^2 / (4b) (E17);
- keeping it is the next-order correction. For b = 1 it is DESIGN's
  (H (x) I + I (x) H - gamma kappa_t E[H_x (x) H_x]) vec S = gamma vec C when E[s^2 | x] = kappa_t;
  for b > 1 the batch terms above appear. The factorisation H_{x,t} = s H_x is exact for the linear
  softmax student (its per-sample Hessian is s (diag q - q q^T) kron xt xt^T); for other students
  it is the bcp-target Hessian and the correction is approximate.
- (*) has a PSD solution only when gamma < gamma_ms = 1 / rho(L^{-1} M), L(S) = H S + S H: the
  mean-square stability threshold of linearised SGD (`mean_square_threshold`).
- heavy-ball momentum beta: to first order gamma -> gamma / (1 - beta) (a first-order claim);
  `heavy_ball_covariance` solves the exact discrete Lyapunov equation of the linearised heavy-ball
  recursion with additive noise, to check it.

In the full gauge H is singular; everything is computed on the range of H (basis Q) and mapped back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla

from synthetic import validation


def _check(H: np.ndarray, C: np.ndarray, gamma: float, batch: int) -> tuple[np.ndarray, np.ndarray, float, int]:
    H = validation.finite_array("H", H, ndim=2)
    C = validation.finite_array("C", C, shape=H.shape)
    return H, C, validation.positive("gamma", gamma), validation.positive_int("batch", batch)


def _on_range(H: np.ndarray, Q: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    Q = np.eye(H.shape[0]) if Q is None else Q
    return Q, Q.T @ H @ Q


def neighborhood_excess_risk(sigma2: float, gamma: float, batch: int = 1, momentum: float = 0.0) -> float:
    """E17: stationary E[F - F*] ~ gamma sigma_T^2 / (4 b (1 - beta)).

    Small gamma, unbiased teacher. The momentum factor 1/(1 - beta) is a first-order claim
    (heavy ball; see `heavy_ball_covariance` for the exact linear-Gaussian value).
    """
    gamma, b = validation.positive("gamma", gamma), validation.positive_int("batch", batch)
    beta = validation.in_interval("momentum", momentum, 0.0, 1.0, closed=False) if momentum else 0.0
    return gamma * validation.nonnegative("sigma2", sigma2) / (4.0 * b * (1.0 - beta))


def lyapunov_covariance(H: np.ndarray, C: np.ndarray, gamma: float, batch: int = 1, *, Q: np.ndarray | None = None) -> np.ndarray:
    """E17': S `[P, P]` solving H S + S H = gamma C / b on the range of H (basis Q `[P, r]`).

    Uses `scipy.linalg.solve_continuous_lyapunov`. Pass gamma / (1 - beta) for momentum (first order).
    """
    H, C, gamma, b = _check(H, C, gamma, batch)
    Q, Hr = _on_range(H, Q)
    Sr = scipy.linalg.solve_continuous_lyapunov(Hr, gamma * (Q.T @ C @ Q) / b)
    S = Q @ (0.5 * (Sr + Sr.T)) @ Q.T
    return S


def lyapunov_residual(H: np.ndarray, S: np.ndarray, C: np.ndarray, gamma: float, batch: int = 1,
                      Q: np.ndarray | None = None) -> float:
    """Relative Frobenius residual ||H S + S H - gamma C / b|| / ||gamma C / b|| on the range of H."""
    Q = np.eye(H.shape[0]) if Q is None else Q
    rhs = gamma * (Q.T @ C @ Q) / batch
    lhs = Q.T @ (H @ S + S @ H) @ Q
    return float(np.linalg.norm(lhs - rhs) / np.linalg.norm(rhs))


@dataclass(frozen=True)
class CorrectedStationary:
    """Solution of (*) (module docstring).

    Attributes:
        S: second moment `[P, P]`. dist2: tr S. excess_risk: tr(H S) / 2.
        gamma_ms: mean-square stability threshold of the linearised recursion.
        residual: relative residual of (*). converged: the iterative solver converged.
    """

    S: np.ndarray
    dist2: float
    excess_risk: float
    gamma_ms: float
    residual: float
    converged: bool


class _SecondOrder:
    """The map S -> M(S) of (*) in the eigenbasis of H on its range, divided by lambda_i + lambda_j."""

    def __init__(self, H: np.ndarray, U: np.ndarray, weights: np.ndarray, batch: int, Q: np.ndarray | None):
        Q, Hr = _on_range(H, Q)
        lam, V = np.linalg.eigh(Hr)
        self.Q, self.V, self.lam, self.b = Q, V, lam, batch
        self.Ut = np.einsum("pr,npk->nrk", Q @ V, U)  # per-sample factors in the eigenbasis [N, r, K]
        self.w = weights  # w_n E[s^2 | x_n]: node weight times the mean squared target sum
        self.D = lam[:, None] + lam[None, :]

    def M(self, S: np.ndarray) -> np.ndarray:
        SU = np.matmul(S, self.Ut)  # [N, r, K]
        inner = np.matmul(self.Ut.transpose(0, 2, 1), SU) * self.w[:, None, None]  # U^T S U  [N, K, K]
        B = np.matmul(self.Ut, inner)  # [N, r, K]
        r = len(self.lam)
        out = B.transpose(1, 0, 2).reshape(r, -1) @ self.Ut.transpose(1, 0, 2).reshape(r, -1).T / self.b
        if self.b > 1:
            out += (1 - 1 / self.b) * self.lam[:, None] * S * self.lam[None, :]
        return 0.5 * (out + out.T)

    def to_parameters(self, S: np.ndarray) -> np.ndarray:
        W = self.Q @ self.V
        return W @ S @ W.T

    def to_eigen(self, A: np.ndarray) -> np.ndarray:
        W = self.Q @ self.V
        return W.T @ A @ W


def _weights(U: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    return np.full(len(U), 1.0 / len(U)) if weights is None else np.asarray(weights, dtype=float)


def mean_square_threshold(H: np.ndarray, U: np.ndarray, weights: np.ndarray | None = None, batch: int = 1, *,
                          Q: np.ndarray | None = None, iters: int = 200, rtol: float = 1e-6) -> float:
    """gamma_ms = 1 / rho(L^{-1} M): above it the second moment of linearised SGD diverges.

    rho by power iteration (the map is positive, so the Perron eigenvector is PSD). U `[N, P, K]`
    are per-node Hessian factors, H_x = U U^T; weights `[N]` are w_n E[s^2 | x_n] with node
    weights w_n summing to 1 (default uniform 1/N, s = 1).
    """
    op = _SecondOrder(H, U, _weights(U, weights), batch, Q)
    S = np.eye(len(op.lam))
    rho = 0.0
    for _ in range(iters):
        T = op.M(S) / op.D
        new = float(np.linalg.norm(T))
        S = T / new
        if abs(new - rho) <= rtol * new:
            rho = new
            break
        rho = new
    return 1.0 / rho


def corrected_covariance(H: np.ndarray, C: np.ndarray, U: np.ndarray, gamma: float, batch: int = 1, *,
                         weights: np.ndarray | None = None, Q: np.ndarray | None = None, tol: float = 1e-10) -> CorrectedStationary:
    """Next-order correction of E17': solve (*) by GMRES, preconditioned by the Lyapunov solve.

    Args:
        H, C: Hessian and gradient second moment at theta* `[P, P]`.
        U: per-node Hessian factors `[N, P, K]` (H_x = U U^T).
        gamma: step size (gamma / (1 - beta) for momentum, first order). batch: b.
        weights: w_n E[(sum t)^2 | x_n] `[N]`, node weights w_n summing to 1 (default uniform 1/N
            with sum t = 1; additive noise: E (sum t)^2 = 1 + K nu).
        Q: basis of the range of H (full gauge).
    """
    H, C, gamma, b = _check(H, C, gamma, batch)
    op = _SecondOrder(H, U, _weights(U, weights), b, Q)
    r = len(op.lam)
    rhs = gamma * op.to_eigen(C) / (b * op.D)

    def apply(v: np.ndarray) -> np.ndarray:
        S = v.reshape(r, r)
        return (S - gamma * op.M(S) / op.D).reshape(-1)

    A = spla.LinearOperator((r * r, r * r), matvec=apply, dtype=np.float64)
    sol, info = spla.gmres(A, rhs.reshape(-1), x0=rhs.reshape(-1), rtol=tol, atol=0.0, restart=min(r * r, 60), maxiter=200)
    S = sol.reshape(r, r)
    S = 0.5 * (S + S.T)
    res = float(np.linalg.norm(apply(S.reshape(-1)) - rhs.reshape(-1)) / np.linalg.norm(rhs))
    gamma_ms = mean_square_threshold(H, U, weights, b, Q=Q)
    Sp = op.to_parameters(S)
    return CorrectedStationary(Sp, float(np.trace(S)), float(0.5 * np.sum(op.lam * np.diag(S))), gamma_ms, res, info == 0)


def heavy_ball_covariance(H: np.ndarray, C: np.ndarray, gamma: float, batch: int = 1, momentum: float = 0.0, *,
                          Q: np.ndarray | None = None) -> np.ndarray:
    """Exact stationary covariance `[P, P]` of linearised heavy-ball SGD with additive noise C/b.

    z_k = (delta_k, delta_{k-1}); z_{k+1} = A z_k + (gamma xi_k, 0), A = [[(1+beta) I - gamma H, -beta I],
    [I, 0]]; Sigma = A Sigma A^T + diag(gamma^2 C / b, 0) (`scipy.linalg.solve_discrete_lyapunov`).
    With beta = 0 this is H S + S H - gamma H S H = gamma C / b. Compare tr(H S)/2 with
    E17 (gamma sigma^2 / (4 b (1 - beta))) to check the first-order momentum rule.
    """
    H, C, gamma, b = _check(H, C, gamma, batch)
    beta = validation.in_interval("momentum", momentum, 0.0, 1.0) if momentum else 0.0
    if beta >= 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    Q, Hr = _on_range(H, Q)
    r = Hr.shape[0]
    I, Z = np.eye(r), np.zeros((r, r))
    A = np.block([[(1 + beta) * I - gamma * Hr, -beta * I], [I, Z]])
    noise = np.block([[gamma**2 * (Q.T @ C @ Q) / b, Z], [Z, Z]])
    Sigma = scipy.linalg.solve_discrete_lyapunov(A, noise)
    Sr = Sigma[:r, :r]
    return Q @ (0.5 * (Sr + Sr.T)) @ Q.T


def finite_n(H: np.ndarray, C: np.ndarray, n: int, *, Q: np.ndarray | None = None) -> tuple[float, float]:
    """E18: (E||theta_n - theta*||^2, E[F(theta_n) - F*]) ~ (tr(H^-1 C H^-1) / n, tr(H^-1 C) / (2n)).

    theta_n is the empirical minimiser on n points with frozen targets; H^-1 is the inverse on the
    range of H (pseudo-inverse in the full gauge). One-hot labels: C = H, excess risk p / (2n).
    """
    H = validation.finite_array("H", H, ndim=2)
    C = validation.finite_array("C", C, shape=H.shape)
    n = validation.positive_int("n", n)
    Q, Hr = _on_range(H, Q)
    Cr = Q.T @ C @ Q
    Hi = np.linalg.inv(Hr)
    return float(np.trace(Hi @ Cr @ Hi) / n), float(np.trace(Hi @ Cr) / (2 * n))
