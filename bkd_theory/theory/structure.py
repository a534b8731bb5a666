"""The gradient at theta* on the integration nodes: G(x), the `[P, K]` matrix with columns J_k / p_k
(DESIGN 2.5, E3). Every expectation of the theory is one of two forms over the nodes:

    traces(M)        E[tr(G M G^T) | node]      per node `[N]`     (sigma^2, unit forms, E10)
    second_moment(M) sum_n w_n E[G M G^T | node]           `[P, P]`  (C_T, H = Fisher)

for per-node K x K matrices M (a teacher's covariance, diag p, ...). Two implementations:
- `FeatureGradients`, for students that declare a feature model (logits W phi~(x) on K' free rows):
  G = E(p) kron phi~ with E_jk = delta_jk - p_j (j < K') (E11), so tr(G M G^T) = ||phi~||^2
  tr(E M E^T); on quadrature nodes the conditional moments of phi~ given a node add the residual
  covariance (linear features), and the second moment is assembled from moments in the span's
  reduced coordinates (cost N K'^2 r^2 instead of N K'^2 D^2);
- `JacobianGradients`, any student, exact points only: G^T = `student.prob_jacobian` / p.
`factors()` gives the per-node Hessian factors U (H_x = U U^T = G diag(p) G^T) on exact points.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .integrate import Nodes

if TYPE_CHECKING:  # pragma: no cover
    from ..students import Student

_CHUNK = 1024
_BUDGET_BYTES = 512 * 2**20


class GradientModel:
    """G(x) at theta* on a set of nodes (module docstring)."""

    def __init__(self, student: "Student", nodes: Nodes, theta: torch.Tensor) -> None:
        self.student, self.nodes, self.theta = student, nodes, theta
        self.P, self.K = student.num_params, nodes.p.shape[1]

    def traces(self, M: np.ndarray) -> np.ndarray:
        """E[tr(G M G^T) | node] `[N]` for M `[N, K, K]`."""
        raise NotImplementedError

    def second_moment(self, M: np.ndarray) -> np.ndarray:
        """sum_n w_n E[G M G^T | node] `[P, P]` for M `[N, K, K]`."""
        raise NotImplementedError

    def unit_traces(self) -> dict[str, np.ndarray]:
        """Per-node tr(G U_c G^T) of the standard forms ("label": C_y, "identity": I, "tangent": I - 11^T/K)."""
        from ..teachers import UNIT_FORMS, unit_cov

        return {form: self.traces(unit_cov(form, self.nodes.p)) for form in UNIT_FORMS}

    def factors(self) -> np.ndarray:
        """U `[N, P, K]` with H_x = U U^T = G diag(p) G^T at each node (exact points only)."""
        raise NotImplementedError

    def mean(self, v: np.ndarray) -> np.ndarray:
        """sum_n w_n E[G v_n | node] `[P]` for per-node vectors v `[N, K]` (E3: m = E G (tbar - p))."""
        raise NotImplementedError


class FeatureGradients(GradientModel):
    """G = E(p) kron phi~ for a student with a feature model (E11)."""

    def __init__(self, student: "Student", nodes: Nodes, theta: torch.Tensor) -> None:
        super().__init__(student, nodes, theta)
        fm = student.feature_model()
        self.rows, self.kind = fm.rows, fm.kind
        if not nodes.exact and fm.kind != "linear":
            raise ValueError("quadrature nodes with a residual covariance need linear features")
        self.phi = fm.features(nodes.x)  # [N, D]; the constant feature last
        D = self.phi.shape[1]
        self.R = np.zeros((D, D))
        if not nodes.exact:
            self.R[:-1, :-1] = nodes.resid
        self.pf = nodes.p[:, : self.rows]  # p on the free rows  [N, K']
        self.phi2 = (self.phi**2).sum(1) + np.trace(self.R)  # E[||phi~||^2 | node]

    def _reduce(self, M: np.ndarray) -> np.ndarray:
        """E M E^T `[N, K', K']` with E = S - p_f 1^T (S selects the free rows): written out,
        M_ff - m p_f^T - p_f m^T + (1^T M 1) p_f p_f^T with m = (M 1)_f, in O(N K^2)."""
        r, pf = self.rows, self.pf
        m1 = M.sum(axis=2)[:, :r]  # (M 1)_f
        tot = M.sum(axis=(1, 2))  # 1^T M 1
        out = M[:, :r, :r] - m1[:, :, None] * pf[:, None, :] - pf[:, :, None] * m1[:, None, :]
        return out + tot[:, None, None] * pf[:, :, None] * pf[:, None, :]

    def traces(self, M: np.ndarray) -> np.ndarray:
        r, pf = self.rows, self.pf
        tr = np.trace(M[:, :r, :r], axis1=1, axis2=2) - 2 * (M.sum(axis=2)[:, :r] * pf).sum(1) + M.sum(axis=(1, 2)) * (pf**2).sum(1)
        return tr * self.phi2

    def unit_traces(self) -> dict[str, np.ndarray]:
        """The E11 forms: tr(E U E^T) from tr(U_ff), (U 1)_f and 1^T U 1 of each standard form, times
        E[||phi~||^2 | node] (full gauge: 1 - ||p||^2, K - 2 + K ||p||^2, K - 1)."""
        r, K, pf = self.rows, self.K, self.pf
        pp = (pf**2).sum(1)
        label = pf.sum(1) - pp  # tr(C_y)_ff; C_y 1 = 0
        identity = r - 2 * pf.sum(1) + K * pp
        tangent = np.full(len(pf), r * (1.0 - 1.0 / K))
        return {k: v * self.phi2 for k, v in (("label", label), ("identity", identity), ("tangent", tangent))}

    def second_moment(self, M: np.ndarray) -> np.ndarray:
        A = self._reduce(M) * self.nodes.w[:, None, None]  # [N, K', K'] weighted
        D, r = self.phi.shape[1], self.rows
        if self.nodes.u is not None and self.kind == "linear":
            S = self._reduced_kron(A)
        else:  # sum_n A_n,jl phi_nf phi_ng as one GEMM over the nodes
            Dn = self.phi.shape[1]
            S = (A.reshape(len(A), r * r).T @ (self.phi[:, :, None] * self.phi[:, None, :]).reshape(len(A), -1))
            S = S.reshape(r, r, Dn, Dn).transpose(0, 2, 1, 3)
        S = S + np.einsum("jl,fg->jflg", A.sum(0), self.R)
        S = S.reshape(r * D, r * D)
        return 0.5 * (S + S.T)

    def _reduced_kron(self, A: np.ndarray) -> np.ndarray:
        """sum_n A_n kron phi~_n phi~_n^T with phi~_n = a_k + Bt u_n per class k (linear features)."""
        n = self.nodes
        D, r = self.phi.shape[1], self.rows
        Bt = np.vstack([n.basis, np.zeros((1, n.basis.shape[1]))])  # [D, s]
        out = np.zeros((r, D, r, D))
        s = Bt.shape[1]
        for k in range(len(n.centres)):
            sel = n.cls == k
            a = np.append(n.centres[k], 1.0)
            Ak, uk = A[sel].reshape(-1, r * r), n.u[sel]
            T0 = Ak.sum(0).reshape(r, r)
            T1 = (Ak.T @ uk).reshape(r, r, s) @ Bt.T  # sum_n A_n (Bt u_n)  [r, r, D]
            T2 = (Ak.T @ (uk[:, :, None] * uk[:, None, :]).reshape(-1, s * s)).reshape(r, r, s, s)
            out += T0[:, None, :, None] * np.multiply.outer(a, a)[None, :, None, :]
            out += T1[:, :, :, None].transpose(0, 2, 1, 3) * a[None, None, None, :]
            out += a[None, :, None, None] * T1[:, None, :, :]
            out += np.einsum("fs,jlst,gt->jflg", Bt, T2, Bt, optimize=True)
        return out

    def factors(self) -> np.ndarray:
        if not self.nodes.exact:
            raise ValueError("per-node Hessian factors need exact points (no residual covariance)")
        E = np.eye(self.K)[None, : self.rows] - self.pf[:, :, None]  # [N, K', K]: E_jk = delta_jk - p_j
        F = E * np.sqrt(self.nodes.p)[:, None, :]
        return np.einsum("njk,nf->njfk", F, self.phi).reshape(len(self.phi), -1, self.K)

    def mean(self, v: np.ndarray) -> np.ndarray:
        Ev = v[:, : self.rows] - self.pf * v.sum(1, keepdims=True)  # E(p) v  [N, K']
        return np.einsum("n,nj,nf->jf", self.nodes.w, Ev, self.phi).reshape(-1)  # E[phi~ | node] = phi(E[x | node])


class JacobianGradients(GradientModel):
    """G^T = prob_jacobian / p at exact points, for any student (cached while it fits in 512 MB)."""

    def __init__(self, student: "Student", nodes: Nodes, theta: torch.Tensor) -> None:
        super().__init__(student, nodes, theta)
        if not nodes.exact:
            raise ValueError(f"student {student.spec!r} declares no feature model: its gradients need exact points")
        if np.any(nodes.p <= 0):
            raise ValueError("p(x) underflowed to 0 for some x: G = J / p is undefined there; use a better-conditioned task")
        self._cache = None
        if len(nodes.x) * self.K * self.P * 8 <= _BUDGET_BYTES:
            self._cache = np.concatenate([g for _, g in self._chunks()])

    def _chunks(self):
        x, p = self.nodes.x, self.nodes.p
        if self._cache is not None:
            for lo in range(0, len(x), _CHUNK):
                yield slice(lo, lo + _CHUNK), self._cache[lo:lo + _CHUNK]
            return
        for lo in range(0, len(x), _CHUNK):
            rows = slice(lo, min(lo + _CHUNK, len(x)))
            J = self.student.prob_jacobian(self.theta, torch.as_tensor(x[rows], dtype=self.student.dtype))
            yield rows, J.detach().to(torch.float64).numpy() / p[rows, :, None]

    def traces(self, M: np.ndarray) -> np.ndarray:
        out = np.empty(len(self.nodes.x))
        for rows, Gt in self._chunks():
            out[rows] = np.einsum("nkl,nkp,nlp->n", M[rows], Gt, Gt)
        return out

    def second_moment(self, M: np.ndarray) -> np.ndarray:
        S = np.zeros((self.P, self.P))
        w = self.nodes.w
        for rows, Gt in self._chunks():
            A = np.einsum("nkl,nlq->nkq", M[rows] * w[rows, None, None], Gt)
            S += Gt.reshape(-1, self.P).T @ A.reshape(-1, self.P)
        return 0.5 * (S + S.T)

    def mean(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros(self.P)
        for rows, Gt in self._chunks():
            out += np.einsum("n,nk,nkp->p", self.nodes.w[rows], v[rows], Gt)
        return out

    def factors(self) -> np.ndarray:
        U = np.empty((len(self.nodes.x), self.P, self.K))
        sq = np.sqrt(self.nodes.p)
        for rows, Gt in self._chunks():
            U[rows] = (Gt * sq[rows, :, None]).transpose(0, 2, 1)
        return U


def gradient_model(student: "Student", nodes: Nodes, theta: torch.Tensor) -> GradientModel:
    """`FeatureGradients` when the student declares a feature model, else `JacobianGradients`."""
    cls = FeatureGradients if student.feature_model() is not None else JacobianGradients
    return cls(student, nodes, theta)
