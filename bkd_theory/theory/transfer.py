"""Teacher to student (DESIGN 2.10, E23 and E24): the student's excess risk predicted from a fixed
teacher function, for a student whose logits are linear in fixed features (the linear softmax
student; `Student.feature_model`).

Targets t = (1 - lam) e_y + lam t_T with conditional mean tbar(x) and covariance Cov(t | x). The
population minimiser theta_lam solves E[grad l(theta; x, t)] = 0. With features phi(x), free rows
f and q = q_{theta_lam}(x), the per-sample gradient is psi = (q_f - t_f) kron phi, so at theta_lam

    H      = E[(diag q_f - q_f q_f^T) kron phi phi^T]          (the Hessian of F and of the KD
                                                                  objective: it is target-free)
    C      = E[((q_f - tbar_f)(q_f - tbar_f)^T + Cov(t | x)_ff) kron phi phi^T]
    grad F = E[(q_f - p_f) kron phi]                            (zero when the teacher is unbiased)

E23 (finite n, frozen targets). theta_n - theta_lam = delta solves 0 = Psi_n + A_n delta + T[delta,
delta] / 2 (Psi_n, A_n the empirical gradient and Hessian at theta_lam, T the third derivative).
To second order, with Sigma = H^+ C H^+, H_x = (diag q_f - q_f q_f^T) kron phi phi^T and
mu(x) = E[psi | x],

    E[delta]            = (1/n) H^+ (v - t3(Sigma) / 2),   v = E_x[H_x H^+ mu(x)],
                                                           t3(M) = grad_theta tr(H(theta) M)
    E[F(theta_n)] - F*  = [F(theta_lam) - F*] + [tr(H Sigma) / 2 + grad F . n E[delta]] / n + O(n^-3/2).

The last term is the cross term of DESIGN's E23; it vanishes for unbiased teachers (grad F = 0), so
lam = 0 gives E18 (rank(H) / 2n) and a teacher the student realizes exactly (e.g. softmax(log p /
tau) for the linear student of a Gaussian mixture) gives C = 0: the floor F(theta_lam) - F* for
every n.

E24 (SGD, fresh targets). Around theta_lam the stationary covariance solves H S + S H = gamma C / b
(E17'), and E[grad F_lam] = 0 there gives E[delta] = -H^+ t3(S) / 2, so

    E[F - F*] = [F(theta_lam) - F*] + (gamma / b) [tr C / 4 - grad F . H^+ t3(S_1) / 2],  S_1: H S + S H = C.

A Bayesian teacher sampled per visit with S draws (`teachers.pervisit.PerVisit`) has tbar = the
predictive pbar and Cov(t | x) = Cov_w(p~_w(x)) / S; `Transfer.trace_C` splits into the part that S
divides and the rest, so E24 against S is a + b / S.

Several teachers in one training set (cross-fitting: teacher j answers for fold j, a share a_j of the
points) enter as components: theta_lam is the minimiser for sum_j a_j tbar_j (the objective is
linear in the targets), C = sum_j a_j (E psi_j psi_j^T - m_j m_j^T) with m_j = E psi_j, and v is
linear in mu so it uses the mean target.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch

from synthetic.base import Estimate

from .integrate import Integrator, Nodes

if TYPE_CHECKING:  # pragma: no cover
    from ..students import Student

__all__ = ["Component", "Transfer", "TransferEstimate", "component", "mean_estimate", "subset", "transfer",
           "transfer_estimate"]

_CHUNK = 4096  # nodes per block of the [N, D^2] feature outer products
#: float64 elements of the outer products kept for the last feature matrix (64 MB; `_pair_blocks`)
PAIRS_KEPT = 2**23
_PAIRS: tuple = (None, [])
NEWTON_STEPS, NEWTON_TOL = 30, 1e-11


@dataclass(frozen=True)
class Component:
    """One teacher's target moments on the nodes: tbar(x) `[N, K]`, Cov(t | x) `[N, K, K]` (the
    part of it that per-visit draws divide, `cov_draws`, separately), and its share of the points."""

    tbar: np.ndarray
    cov: np.ndarray
    share: float = 1.0
    cov_draws: np.ndarray | None = None


@dataclass(frozen=True)
class Transfer:
    """E23 and E24 for one (student, teacher, lam) (module docstring). Units: nats.

    Attributes:
        bias: F(theta_lam) - F*.
        variance_n: tr(H Sigma) / 2, the coefficient of 1/n of the finite-n variance term.
        cross_n: grad F . n E[theta_n - theta_lam], the coefficient of 1/n of the cross term.
        trace_C: tr C at theta_lam (grad^2 per sample); trace_C_draws: its part from `cov_draws`.
        cross_sgd: grad F . E[delta] per unit gamma / b in the stationary SGD law; cross_sgd_draws:
            its part from `cov_draws` (E[delta] is linear in C).
    """

    bias: float
    variance_n: float
    cross_n: float
    trace_C: float
    trace_C_draws: float
    cross_sgd: float
    cross_sgd_draws: float = 0.0

    def finite_n(self, n: int) -> float:
        """E23: E[F(theta_n)] - F* of the minimiser of n frozen points (nats)."""
        return self.bias + (self.variance_n + self.cross_n) / n

    def neighborhood(self, gamma: float, batch: int = 1) -> float:
        """E24: stationary E[F - F*] of SGD with fresh targets at step gamma, batch b (nats)."""
        return self.bias + gamma / batch * (self.trace_C / 4 + self.cross_sgd)

    def draws_term(self, gamma: float, batch: int = 1) -> float:
        """E24: the part of `neighborhood` that per-visit draws divide, (gamma / b) [tr C_draws / 4 + its
        cross term] (nats; it scales as 1 / S)."""
        return gamma / batch * (self.trace_C_draws / 4 + self.cross_sgd_draws)


def component(teacher: Any, lam: float, nodes: Nodes, share: float = 1.0) -> Component:
    """The moments of `Mixture(lam, teacher)` on the nodes (`predictions.teacher_moments`). A
    `PerVisit` teacher (S draws per visit) gives tbar = (1 - lam) p + lam pbar and Cov(t | x) =
    (1 - lam)^2 (diag p - p p^T) + lam^2 Cov_w / S (labels and draws independent given x), its
    moments estimated once; the S-dependent part is `cov_draws`."""
    from ..teachers import Mixture
    from ..teachers.pervisit import PerVisit
    from . import predictions

    if isinstance(teacher, PerVisit):
        pbar, cov_w = teacher.moments(nodes.x)
        p = nodes.p
        labels = np.einsum("nk,kl->nkl", p, np.eye(p.shape[1])) - p[:, :, None] * p[:, None, :]
        return Component((1 - lam) * p + lam * pbar, (1 - lam) ** 2 * labels, share, lam**2 * cov_w / teacher.draws)
    db, cov = predictions.teacher_moments(Mixture(lam, teacher) if lam < 1.0 else teacher, nodes)
    return Component(nodes.p + db, cov, share)


def _pair_blocks(phi: np.ndarray) -> Iterable[tuple[slice, np.ndarray]]:
    """(s, phi_n phi_n^T for n in s, `[len(s), D^2]`) over blocks of `_CHUNK` nodes. The blocks of
    the last matrix are kept while they fit `PAIRS_KEPT` (every Newton step and moment of one
    `transfer` uses the same phi; kept or built anew, the numbers are the same)."""
    global _PAIRS
    held, kept = _PAIRS
    if held is phi:
        return kept
    D = phi.shape[1]
    blocks = ((slice(lo, lo + _CHUNK), (phi[lo:lo + _CHUNK, :, None] * phi[lo:lo + _CHUNK, None, :]).reshape(-1, D * D))
              for lo in range(0, len(phi), _CHUNK))
    if len(phi) * D * D > PAIRS_KEPT:
        return blocks
    kept = list(blocks)
    _PAIRS = (phi, kept)  # one assignment: a reader sees the old pair or the new one
    return kept


def _kron_mean(w: np.ndarray, M: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """sum_n w_n M_n kron phi_n phi_n^T `[rD, rD]` for M `[N, r, r]` (row-major W index j * D + f)."""
    r, D = M.shape[1], phi.shape[1]
    out = np.zeros((r * r, D * D))
    for s, pairs in _pair_blocks(phi):
        out += (M[s] * w[s, None, None]).reshape(-1, r * r).T @ pairs
    return out.reshape(r, r, D, D).transpose(0, 2, 1, 3).reshape(r * D, r * D)


def _vec_mean(w: np.ndarray, c: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """sum_n w_n c_n kron phi_n `[rD]` for c `[N, r]`."""
    return np.einsum("n,nj,nf->jf", w, c, phi).reshape(-1)


def _forms(M: np.ndarray, phi: np.ndarray, r: int) -> np.ndarray:
    """phi_n^T M[j, :, l, :] phi_n `[N, r, r]` for M `[rD, rD]`."""
    D = phi.shape[1]
    M4 = M.reshape(r, D, r, D).transpose(1, 3, 0, 2).reshape(D * D, r * r)
    out = np.empty((len(phi), r, r))
    for s, pairs in _pair_blocks(phi):
        out[s] = (pairs @ M4).reshape(-1, r, r)
    return out


def _log_q(W: np.ndarray, phi: np.ndarray, K: int) -> np.ndarray:
    z = phi @ W.T
    if z.shape[1] < K:
        z = np.concatenate([z, np.zeros((len(z), K - z.shape[1]))], axis=1)
    return z - np.logaddexp.reduce(z, axis=1, keepdims=True)


def _fisher(q: np.ndarray, r: int) -> np.ndarray:
    """diag q_f - q_f q_f^T `[N, r, r]`."""
    qf = q[:, :r]
    return np.einsum("nj,jl->njl", qf, np.eye(r)) - qf[:, :, None] * qf[:, None, :]


def _minimiser(theta0: np.ndarray, tbar: np.ndarray, phi: np.ndarray, w: np.ndarray, r: int) -> np.ndarray:
    """theta_lam `[rD]` by Newton from theta0 on E[CE(tbar, q_theta)] (convex for linear logits),
    halving a step that raises the objective; ValueError if it has not converged."""
    K, D = tbar.shape[1], phi.shape[1]
    risk = lambda th: float(-(w * (tbar * _log_q(th.reshape(r, D), phi, K)).sum(1)).sum())  # noqa: E731
    th = theta0.copy()
    for _ in range(NEWTON_STEPS):
        q = np.exp(_log_q(th.reshape(r, D), phi, K))
        g = _vec_mean(w, q[:, :r] - tbar[:, :r], phi)
        if np.abs(g).max() <= NEWTON_TOL:
            return th
        step, f0, t = np.linalg.pinv(_kron_mean(w, _fisher(q, r), phi), hermitian=True) @ g, risk(th), 1.0
        while t > 1e-6 and risk(th - t * step) > f0 + 1e-15:
            t /= 2
        th = th - t * step
    raise ValueError(f"theta_lam: Newton did not converge in {NEWTON_STEPS} steps (max |grad| {np.abs(g).max():.3g})")


def _t3(M: np.ndarray, q: np.ndarray, phi: np.ndarray, w: np.ndarray, r: int) -> np.ndarray:
    """grad_theta tr(H(theta) M) at q `[N, K]` -> `[rD]`: the third derivative of the log-partition
    contracted with M, through the free logits z (d q / d z by autograd)."""
    forms = torch.from_numpy(_forms(M, phi, r))
    K = q.shape[1]
    lq = torch.from_numpy(np.log(q))
    z = (lq[:, :r] - (lq[:, r:r + 1] if r < K else 0.0)).clone().requires_grad_(True)
    full = torch.cat([z, torch.zeros(len(z), K - r, dtype=z.dtype)], dim=1) if r < K else z
    qq = torch.softmax(full, dim=1)[:, :r]
    A = torch.diag_embed(qq) - qq[:, :, None] * qq[:, None, :]
    s = (torch.from_numpy(w)[:, None, None] * A * forms).sum()
    (dz,) = torch.autograd.grad(s, z)
    return np.einsum("nj,nf->jf", dz.numpy(), phi).reshape(-1)


def transfer(student: "Student", theta_star: np.ndarray, nodes: Nodes, parts: Sequence[Component], *,
             sgd: bool = True) -> Transfer:
    """`Transfer` of the teacher components `parts` on exact nodes (points), for a student with a
    feature model; theta_star `[P]` starts Newton (module docstring for every term). `sgd=False`
    leaves out E24's cross terms (two Lyapunov solves; they are then 0)."""
    fm = student.feature_model()
    if fm is None or not nodes.exact:
        raise ValueError("E23/E24 need a student with a feature model (logits linear in features) and exact points")
    r, phi, w, p = fm.rows, fm.features(nodes.x), nodes.w, nodes.p
    shares = np.array([c.share for c in parts], dtype=float)
    shares = shares / shares.sum()
    tbar = sum(a * c.tbar for a, c in zip(shares, parts))
    th = _minimiser(np.asarray(theta_star, dtype=np.float64), tbar, phi, w, r)
    lq = _log_q(th.reshape(r, -1), phi, p.shape[1])
    q = np.exp(lq)
    A = _fisher(q, r)
    H = _kron_mean(w, A, phi)
    Hp = np.linalg.pinv(H, hermitian=True, rcond=1e-10)
    C = np.zeros_like(H)
    draws = np.zeros_like(H)
    for a, c in zip(shares, parts):
        d = q[:, :r] - c.tbar[:, :r]
        m = _vec_mean(w, d, phi)
        C += a * (_kron_mean(w, d[:, :, None] * d[:, None, :] + c.cov[:, :r, :r], phi) - np.outer(m, m))
        if c.cov_draws is not None:
            part = a * _kron_mean(w, c.cov_draws[:, :r, :r], phi)
            C, draws = C + part, draws + part
    grad_F = _vec_mean(w, q[:, :r] - p[:, :r], phi)
    Sigma = Hp @ C @ Hp
    mu = q[:, :r] - tbar[:, :r]
    v = _vec_mean(w, np.einsum("njl,nlk,nk->nj", A, _forms(Hp, phi, r), mu), phi)
    bias_n = Hp @ (v - 0.5 * _t3(Sigma, q, phi, w, r))
    cross = (lambda M: _cross_sgd(M, grad_F, H, Hp, q, phi, w, r)) if sgd else (lambda M: 0.0)  # noqa: E731
    kl = (p * (np.log(np.maximum(p, 1e-300)) - lq)).sum(1)
    return Transfer(bias=float(w @ kl), variance_n=float(np.sum(H * Sigma)) / 2, cross_n=float(grad_F @ bias_n),
                    trace_C=float(np.trace(C)), trace_C_draws=float(np.trace(draws)), cross_sgd=cross(C),
                    cross_sgd_draws=cross(draws))


def _cross_sgd(M: np.ndarray, grad_F: np.ndarray, H: np.ndarray, Hp: np.ndarray, q: np.ndarray, phi: np.ndarray,
               w: np.ndarray, r: int) -> float:
    """E24's cross term per unit gamma / b: -grad F . H^+ t3(S_1) / 2 with H S_1 + S_1 H = M (0 for M = 0)."""
    from . import stationary

    if not np.any(M):
        return 0.0
    return float(-0.5 * grad_F @ Hp @ _t3(stationary.lyapunov_covariance(H, M, 1.0, 1), q, phi, w, r))


@dataclass(frozen=True)
class TransferEstimate:
    """`Transfer` on all nodes and on the integrator's second look (the coarse rule, or each Monte
    Carlo batch), so any function of it has an error bar (`estimate`)."""

    full: Transfer
    others: tuple[Transfer, ...]
    kind: str
    method: str

    def estimate(self, fn: Any, what: str = "E23") -> Estimate:
        """fn(Transfer) -> float with its SE: |fine - coarse| (quadrature) or batch means (Monte Carlo)."""
        return mean_estimate([self], fn, what)


def mean_estimate(ests: Sequence[TransferEstimate], fn: Any, what: str = "E23") -> Estimate:
    """The mean over `ests` (e.g. one per chain, on the same nodes) of fn(Transfer) -> float, with the
    SE of that mean from the same second look: |fine - coarse| of the means (quadrature) or the
    batch-means SE of the per-batch means (Monte Carlo), so errors shared through the nodes count once."""
    from ..stats import mean_se

    value = float(np.mean([fn(e.full) for e in ests]))
    each = np.mean([[float(fn(t)) for t in e.others] for e in ests], axis=0)
    se = abs(float(each[0]) - value) if ests[0].kind == "quadrature" else float(mean_se(each)[1])
    return Estimate(value, se, f"{what} on {ests[0].method}")


def transfer_estimate(student: "Student", theta_star: np.ndarray, integ: Integrator, parts_of: Any, *,
                      sgd: bool = True) -> TransferEstimate:
    """`TransferEstimate` over `integ`: `parts_of(nodes, idx)` gives the components on `nodes` (idx:
    their rows in `integ.nodes`, None for the coarse rule), so moments computed once on all nodes
    are subset for the Monte Carlo batches; `sgd` as in `transfer`."""
    nodes = integ.nodes
    full = transfer(student, theta_star, nodes, parts_of(nodes, np.arange(len(nodes))), sgd=sgd)
    if integ.coarse is not None:
        others = (transfer(student, theta_star, integ.coarse, parts_of(integ.coarse, None), sgd=sgd),)
    else:
        others = tuple(transfer(student, theta_star, nodes.subset(b), parts_of(nodes.subset(b), b), sgd=sgd)
                       for b in integ.batches)
    return TransferEstimate(full, others, integ.kind, integ.method)


def subset(part: Component, idx: np.ndarray | None) -> Component:
    """`part` restricted to rows idx (all rows for None)."""
    if idx is None:
        return part
    pick = lambda a: None if a is None else a[idx]  # noqa: E731
    return Component(part.tbar[idx], part.cov[idx], part.share, pick(part.cov_draws))
