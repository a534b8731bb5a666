"""E22: the Hinton loss at a student temperature T, by the general route (DESIGN 2.10, E4, E17).

Loss (`students.kd`): l = (1 - lam) CE(e_y, q) + lam T^2 CE(s, softmax(f / T)), s = t^(T) =
softmax(log t / T) for a teacher draw t. Its logit residual is r = a(f) - b with

    a(f) = (1 - lam) q + lam T q_T,   q_T = softmax(f / T),   b = (1 - lam) e_y + lam T s,

so only b is random given x, and d r / d f = (1 - lam) Sigma(q) + lam Sigma(q_T), Sigma(v) = diag v - v v^T
(the T^2 of the loss cancels the 1/T^2 of the curvature). For the linear student (E11) the
gradient is r kron phi~ on the free rows. Then:

(a) t = p (exact BCPs): at f = log p + c, q_T = softmax(log p / T) = p^(T) = s, so the soft part of
    every per-sample residual vanishes; E[r | x] = (1 - lam)(p - p) = 0 too, so theta* is the
    tempered objective's minimiser at every T and lam (realizable student). With lam = 1 every
    per-sample gradient vanishes (interpolation: SGD converges, no neighborhood); with lam < 1 the
    labels leave r = (1 - lam)(p - e_y): C = (1 - lam)^2 C_onehot and a neighborhood.
(b) a teacher-only temperature tau (student at T = 1): `distillation.temperature_floor`.
(c) a noisy soft teacher: s is random and biased (E[t^(T) | x] != tbar^(T)), so the minimiser
    theta_T solves E[r kron phi~] = 0 (Newton below, not theta*). At theta_T, with d = a - E[b | x]:

        C = E_x[(Cov(b | x) + d d^T) kron phi~ phi~^T],      sigma^2(T) = tr C        (E4, tempered)
        H_T = E_x[((1 - lam) Sigma(q) + lam Sigma(q_T)) kron phi~ phi~^T]

    and SGD's stationary covariance S solves H_T S + S H_T = gamma C / b (E17). Measured in the
    student's own F - F* = E_x KL(p || q), to first order in gamma,

        E[F - F*] ~ [F(theta_T) - F*] + grad F(theta_T) . E[theta - theta_T] + tr(H_1 S) / 2,

    H_1 the Hessian of F at theta_T (E17 is the case theta_T = theta*, H_1 = H_T: gamma sigma^2 / (4b)).
    The mean shift is O(gamma) like S: stationarity gives E[grad F_T(theta)] = 0, so to first order
    E[theta - theta_T] = -H_T^-1 (grad^3 F_T : S) / 2; it counts wherever grad F(theta_T) != 0, i.e.
    wherever the tempered minimiser is biased.

A `mixture:LAM:BASE` teacher is read as the engine reads it (`engine.kd.soft_part`): soft part BASE,
weight lam x LAM. Inner moments: exact for teachers that are deterministic given x (bcp, temperature); otherwise a
Monte Carlo of `draws` (y, t) pairs per node with a fixed seed, whose error is the spread over
`GROUPS` disjoint groups of the draws (the residual's share of the estimate's own noise, Cov/draws,
is taken out of C); the x-integration error is the change to the coarse rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import scipy.linalg

from synthetic import validation
from synthetic.base import Estimate

from .. import rng as rng_mod
from ..stats import mean_se
from ..students.kd import temper
from ..teachers import parse_teacher
from ..teachers.kernels import categorical
from .integrate import Integrator, Nodes
from .stationary import lyapunov_covariance

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..students import Student

__all__ = ["TemperedNoise", "tempered_noise", "tempered_prediction", "GROUPS"]

#: disjoint groups of the inner Monte Carlo draws (the error bar of a stochastic teacher's moments)
GROUPS = 4
#: the index of this module's inner draws in the "theory.targets" stream
STREAM = 22


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigma(v: np.ndarray) -> np.ndarray:
    """Sigma(v) = diag v - v v^T `[N, K, K]`."""
    return np.einsum("nk,kl->nkl", v, np.eye(v.shape[1])) - v[:, :, None] * v[:, None, :]


@dataclass(frozen=True)
class TemperedNoise:
    """The tempered objective at its minimiser theta_T (module docstring), one (T, lam, teacher).

    Attributes:
        T, lam: student temperature and KD weight. theta: theta_T `[P]`. grad_norm: the population
        gradient norm left by Newton. H: Hessian of the tempered objective `[P, P]`. C: per-sample
        gradient covariance `[P, P]`. H_ce: Hessian of F (CE against p) at theta_T `[P, P]`.
        bias: F(theta_T) - F* (nats). grad_ce: grad F at theta_T `[P]` (0 when theta_T = theta*).
        third: S -> grad^3 F_T : S `[P]`, the tempered objective's third derivative contracted with S.
    """

    T: float
    lam: float
    theta: np.ndarray
    grad_norm: float
    H: np.ndarray
    C: np.ndarray
    H_ce: np.ndarray
    bias: float
    grad_ce: np.ndarray
    third: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)
    Q: np.ndarray | None = field(default=None, repr=False)  # basis of the identifiable directions (full gauge)

    @property
    def sigma2(self) -> float:
        """sigma^2(T) = tr C = E||grad l(theta_T; x, t)||^2 (E4 on the tempered loss)."""
        return float(np.trace(self.C))

    def covariance(self, gamma: float, batch: int = 1) -> np.ndarray:
        """S `[P, P]`: H_T S + S H_T = gamma C / b (E17's Lyapunov equation on the tempered objective)."""
        return lyapunov_covariance(self.H, self.C, validation.positive("gamma", gamma), batch, Q=self.Q)

    def mean_shift(self, gamma: float, batch: int = 1) -> np.ndarray:
        """E[theta - theta_T] `[P]` to first order in gamma: -H_T^-1 (grad^3 F_T : S) / 2 (stationarity
        makes E[grad F_T(theta)] = 0; expand it to second order in theta - theta_T)."""
        return -0.5 * np.linalg.lstsq(self.H, self.third(self.covariance(gamma, batch)), rcond=1e-10)[0]  # H^+ (gauge)

    def neighborhood(self, gamma: float, batch: int = 1) -> float:
        """Stationary E[F - F*] ~ bias + grad F . E[theta - theta_T] + tr(H_1 S) / 2, to first order in gamma (nats)."""
        S = self.covariance(gamma, batch)
        shift = float(self.grad_ce @ self.mean_shift(gamma, batch)) if np.any(self.grad_ce) else 0.0
        return self.bias + shift + 0.5 * float(np.sum(self.H_ce * S))

    def e17(self, gamma: float, batch: int = 1) -> float:
        """gamma sigma^2 / (4b): E17 read literally on the tempered objective (exact only if H_1 = H_T)."""
        return gamma * self.sigma2 / (4 * batch)


Moments = tuple  # (E[b | x] `[N, K]`, Cov(b | x) `[N, K, K]`, Cov of the E[b | x] estimate `[N, K, K]`)


def _pooled(parts: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean, unbiased covariance, count) of the union of groups given as (mean, covariance, count)."""
    M = sum(m for _, _, m in parts)
    mean = sum(m * b for b, _, m in parts) / M
    ss = sum((m - 1) * c + m * (b - mean)[:, :, None] * (b - mean)[:, None, :] for b, c, m in parts)
    return mean, ss / (M - 1), M


def _inner(teacher: Any, p: np.ndarray, T: float, lam: float, draws: int, seed: int) -> list[Moments]:
    """The moments of b = (1 - lam) e_y + lam T s given x: all draws first, then each of the GROUPS
    groups; one exact entry for a teacher fixed given x (module docstring)."""
    label = (1 - lam) ** 2 * _sigma(p)
    if not teacher.stochastic and not teacher.uses_label:
        return [((1 - lam) * p + lam * T * temper(teacher.mean(p), T), label, np.zeros_like(label))]
    N, K = p.shape
    rng = rng_mod.stream(seed, "theory.targets", STREAM)
    m = max(2, draws // GROUPS)
    parts = []
    for _ in range(GROUPS):
        rep = np.broadcast_to(p, (m, N, K)).reshape(-1, K)
        y = categorical(rep, rng).reshape(m, N)
        s = temper(teacher.sample(rep, y.reshape(-1), rng), T).reshape(m, N, K)
        b = (1 - lam) * np.eye(K)[y] + lam * T * s if teacher.uses_label else lam * T * s  # the random part
        mean = b.mean(0)
        parts.append((mean, np.einsum("mnk,mnl->nkl", b - mean, b - mean) / (m - 1), m))
    # a teacher that ignores y: the label part is exact and independent of the soft draw
    offset, exact = (0.0, 0.0) if teacher.uses_label else ((1 - lam) * p, label)
    return [(offset + b, exact + c, c / M) for b, c, M in [_pooled(parts), *parts]]


def _solve(student: "Student", nodes: Nodes, bbar: np.ndarray, cov: np.ndarray, noise: np.ndarray, T: float,
           lam: float, theta0: np.ndarray, steps: int = 50, tol: float = 1e-13) -> TemperedNoise:
    """Newton on E[r kron phi~] = 0 from theta0, then H, C, H_1 and the bias at theta_T.

    `noise` is the covariance of the estimate `bbar` (inner Monte Carlo): the residual d = a - bbar
    carries it, E[d d^T] = d_true d_true^T + noise (up to the P fitted directions), so C subtracts it."""
    fm = student.feature_model()
    phi, w, p = fm.features(nodes.x), nodes.w, nodes.p
    rows, K, D = fm.rows, p.shape[1], fm.features(nodes.x[:1]).shape[1]
    pp = (phi[:, :, None] * phi[:, None, :]).reshape(len(w), D * D)

    def kron(A: np.ndarray) -> np.ndarray:  # sum_n w_n A_n (free rows) kron phi~_n phi~_n^T, one GEMM over the nodes
        out = ((A[:, :rows, :rows] * w[:, None, None]).reshape(len(w), -1).T @ pp).reshape(rows, rows, D, D)
        return out.transpose(0, 2, 1, 3).reshape(rows * D, rows * D)

    def at(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        f = phi @ theta.reshape(rows, D).T
        f = np.pad(f, ((0, 0), (0, K - rows)))
        q, qT = _softmax(f), _softmax(f / T)
        d = (1 - lam) * q + lam * T * qT - bbar
        g = np.einsum("n,nj,nf->jf", w, d[:, :rows], phi).reshape(-1)
        return g, kron((1 - lam) * _sigma(q) + lam * _sigma(qT)), q, d

    theta = np.array(theta0, dtype=np.float64)
    for _ in range(steps):
        g, H, _, _ = at(theta)
        if np.linalg.norm(g) <= tol:
            break
        theta = theta - np.linalg.lstsq(H, g, rcond=1e-12)[0]
    g, H, q, d = at(theta)
    C = kron(cov - noise + d[:, :, None] * d[:, None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0).sum(1)
    grad_ce = np.einsum("n,nj,nf->jf", w, (q - p)[:, :rows], phi).reshape(-1)
    qT = _softmax(np.log(np.maximum(q, 1e-300)) / T)  # softmax(f / T): log q = f - logsumexp(f)

    def third(S: np.ndarray) -> np.ndarray:
        # d/df tr(Sigma(v) M) = Sigma(v) (diag M - 2 M v) dv-scaled: v = q (scale 1), q_T (scale 1/T); M = phi S phi^T
        M = np.zeros((len(w), K, K))
        M[:, :rows, :rows] = np.einsum("nf,jflg,ng->njl", phi, S.reshape(rows, D, rows, D), phi)
        dM = np.diagonal(M, axis1=1, axis2=2)
        v = sum(c * np.einsum("nkl,nl->nk", _sigma(u), dM - 2 * np.einsum("nkl,nl->nk", M, u))
                for c, u in ((1 - lam, q), (lam / T, qT)))
        return np.einsum("n,nj,nf->jf", w, v[:, :rows], phi).reshape(-1)

    null = np.asarray(student.gauge_basis(), dtype=np.float64)
    Q = None if null.shape[1] == 0 else scipy.linalg.null_space(null.T)
    return TemperedNoise(T, lam, theta, float(np.linalg.norm(g)), H, 0.5 * (C + C.T), kron(_sigma(q)), float(w @ kl),
                         grad_ce, third, Q)


def tempered_noise(task: "Task", student: "Student", teacher: Any, T: float, nodes: Nodes, *, lam: float = 1.0,
                   draws: int = 256, seed: int = 0, groups: bool = True) -> list[TemperedNoise]:
    """The tempered objective at theta_T on `nodes` (exact points): first with every inner draw,
    then (`groups`) one entry per group of draws; one entry for a teacher fixed given x (module docstring).

    Args:
        T: student temperature > 0. lam: KD weight in [0, 1]. draws: inner (y, t) draws per node.
    Raises ValueError for a student without a linear feature model or nodes that are not points.
    """
    T = validation.positive("kd_temperature", T)
    lam = validation.in_interval("lam", lam, 0.0, 1.0)
    fm = student.feature_model()
    if fm is None:
        raise ValueError(f"tempered_noise needs a student with a feature model (the linear student), got {student.spec!r}")
    if not nodes.exact:
        raise ValueError("tempered_noise needs exact integration points (the tempered target is not linear in p)")
    from ..engine.kd import soft_part  # the engine's reading of a mixture teacher: nested weights multiply

    mix, teacher = soft_part(parse_teacher(teacher))
    lam *= mix
    theta0 = student.optimum(task).double().numpy()
    moments = _inner(teacher, nodes.p, T, lam, validation.positive_int("draws", draws, minimum=2 * GROUPS), seed)
    return [_solve(student, nodes, *g, T, lam, theta0) for g in (moments if groups else moments[:1])]


def tempered_prediction(task: "Task", student: "Student", teacher: Any, T: float, integ: Integrator, quantity: str, *,
                        lam: float = 1.0, gamma: float = 1.0, batch: int = 1, draws: int = 256, seed: int = 0) -> Estimate:
    """One quantity of the tempered objective with its error bar: "sigma2", "bias", "neighborhood"
    (E[F - F*] at gamma, batch), "excess" (its part above the bias, E[F] - F(theta_T)), "curvature"
    (tr(H_1 S) / 2 alone) or "e17". SE: the inner groups' spread / sqrt(GROUPS), combined with the
    change to the coarse rule (quadrature) or the batch-means spread (Monte Carlo nodes)."""
    pick = {"sigma2": lambda r: r.sigma2, "bias": lambda r: r.bias, "e17": lambda r: r.e17(gamma, batch),
            "neighborhood": lambda r: r.neighborhood(gamma, batch),
            "excess": lambda r: r.neighborhood(gamma, batch) - r.bias,
            "curvature": lambda r: 0.5 * float(np.sum(r.H_ce * r.covariance(gamma, batch)))}
    fn = pick[validation.one_of("quantity", quantity, tuple(pick))]
    kw = dict(lam=lam, draws=draws, seed=seed)
    fine = tempered_noise(task, student, teacher, T, integ.nodes, **kw)
    value = fn(fine[0])
    se_inner = mean_se([fn(r) for r in fine[1:]])[1] if len(fine) > 1 else 0.0  # fine[1:]: the GROUPS inner groups
    coarse = lambda nodes: fn(tempered_noise(task, student, teacher, T, nodes, groups=False, **kw)[0])  # noqa: E731
    se_x = float(integ.error(coarse, value))
    how = (f"E22 general route on {integ.method}; inner moments " +
           ("exact" if len(fine) == 1 else f"Monte Carlo, {draws} draws per node, SE over {GROUPS} groups"))
    return Estimate(float(value), math.hypot(se_inner, se_x), how)
