"""The constants of the convergence theorems (DESIGN 2.6): H, mu, L, kappa, calL (E12), F*.

- `hessian_at_optimum`: the population Hessian H of F at theta*, Monte Carlo over x (the same
  inputs as `predictions.gradient_noise`, so C_onehot == H holds sample by sample: Fisher = Hessian).
- `curvature`: eigenvalues of H, mu = lambda_min, L = lambda_max, kappa = L / mu. In the full gauge
  (and wherever H has null directions) they are taken on the range of H, and the report says so.
- `local_constants`: mu and L as the extreme Hessian eigenvalues over sampled points of the ball of
  a stated radius around theta* (CE is not globally strongly convex, so mu and L are local).
- `expected_smoothness`: calL of E12 for a stated finite training set (uniform single-sample
  sampling: max_i L_i, L_i = c ||xt_i||^2; minibatch b: Gower et al. 2019, Prop. 3.8).
- `expected_smoothness_empirical`: max over sampled theta of
  E ||grad f_v(theta) - grad f_v(theta*)||^2 / (2 (F(theta) - F*)), a lower estimate to set beside E12.
- `f_star`: F* = H(Y|X) (Prop. 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg
import torch

from synthetic import validation
from synthetic.base import Estimate
from synthetic.features import augmented

from .. import rng as rng_mod
from ..stats import ratio_of_means
from .integrate import Nodes
from .predictions import DEFAULT_N_MC, model, nodes_or_mc, sample_inputs, theta_star

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..students import Student


def hessian_at_optimum(task: "Task", student: "Student", *, n_mc: int = DEFAULT_N_MC, seed: int = 0,
                       method: str = "auto", at: Nodes | None = None) -> np.ndarray:
    """Population Hessian of F at theta* `[P, P]`, on the nodes `at` (default: n_mc Monte Carlo inputs).

    By linearity of E1 in t, the Hessian of F_T is the same for every unbiased teacher whose targets
    sum to 1 in mean; it is computed with bcp targets t = p(x).

    Args:
        method: "linear" (E[(diag p - p p^T) kron xt xt^T] on the free rows, from the student's
            feature model), "fisher" (E[G diag(p) G^T] from `prob_jacobian`, the identity Fisher =
            Hessian at a realizable optimum), "student" (`student.hessian`, exact points only), or
            "auto" (linear if the student has a feature model, else student).
    """
    method = validation.one_of("method", method, ("auto", "student", "linear", "fisher"))
    fm = student.feature_model()
    if method == "auto":
        method = "linear" if fm is not None else "student"
    nodes = nodes_or_mc(task, n_mc, seed, at)
    if method in ("linear", "fisher"):
        g = model(task, student, nodes, "linear" if method == "linear" else "jacobian")
        return g.second_moment(np.einsum("nk,kl->nkl", nodes.p, np.eye(nodes.p.shape[1])))
    if not nodes.exact:
        raise ValueError("method='student' needs exact points (Monte Carlo, or quadrature over the whole space)")
    theta, H = theta_star(task, student), np.zeros((student.num_params,) * 2)
    for start in range(0, len(nodes.x), 1024):
        sl = slice(start, min(start + 1024, len(nodes.x)))
        m = sl.stop - sl.start  # the loss is linear in t: targets w_n m p_n make the chunk's mean sum_n w_n H_n
        t = nodes.p[sl] * (nodes.w[sl] * m)[:, None]
        h = student.hessian(theta, torch.as_tensor(nodes.x[sl], dtype=student.dtype), torch.as_tensor(t, dtype=student.dtype))
        H += h.detach().to(torch.float64).numpy()
    return 0.5 * (H + H.T)


def null_basis(student: "Student") -> np.ndarray:
    """Orthonormal basis `[P, m]` of the parameter directions that never change q: the student's
    declared `gauge_basis()` (linear full gauge: 1_K kron R^{F+1}; pinned gauge: none)."""
    return np.asarray(student.gauge_basis(), dtype=np.float64)


def range_basis(P: int, null: np.ndarray) -> np.ndarray:
    """Orthonormal basis `[P, P - m]` of the orthogonal complement of `null` `[P, m]`."""
    return np.eye(P) if null.shape[1] == 0 else scipy.linalg.null_space(null.T)


@dataclass(frozen=True)
class Curvature:
    """Spectrum of a Hessian on its range.

    Attributes:
        eigenvalues: ascending eigenvalues on the range `[r]`.
        mu: lambda_min on the range. L: lambda_max. kappa: L / mu.
        null_dim: number of directions removed (gauge null space, or numerically zero eigenvalues).
        region: where the Hessian was evaluated (e.g. "theta*").
        basis: orthonormal eigenvectors of the kept eigenvalues `[P, r]` (a basis of the range).
    """

    eigenvalues: np.ndarray = field(repr=False)
    mu: float
    L: float
    kappa: float
    null_dim: int
    region: str
    basis: np.ndarray = field(repr=False, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"mu": self.mu, "L": self.L, "kappa": self.kappa, "null_dim": self.null_dim, "region": self.region}


def curvature(H: np.ndarray, null: np.ndarray | None = None, *, rtol: float = 1e-10, region: str = "theta*") -> Curvature:
    """Eigenvalues of H `[P, P]` on the complement of `null` `[P, m]`; eigenvalues below rtol * L
    are also treated as null (reported in `null_dim`)."""
    H = validation.finite_array("H", H, ndim=2)
    null = np.zeros((H.shape[0], 0)) if null is None else null
    Q = range_basis(H.shape[0], null)
    ev, V = np.linalg.eigh(Q.T @ H @ Q)
    keep = ev > rtol * ev[-1]
    ev_r = ev[keep]
    mu, L = float(ev_r[0]), float(ev_r[-1])
    where = region + (" (on the range of H)" if null.shape[1] or not keep.all() else "")
    return Curvature(ev_r, mu, L, L / mu, int(null.shape[1] + (~keep).sum()), where, Q @ V[:, keep])


def preconditioned_null(null: np.ndarray, p: np.ndarray) -> np.ndarray:
    """An orthonormal basis `[P, m]` of null(P^1/2 H P^1/2) = P^-1/2 null(H) for P = diag(p) > 0 (E21)."""
    return scipy.linalg.orth(null / np.sqrt(np.asarray(p, dtype=np.float64))[:, None]) if null.shape[1] else null


def preconditioned_curvature(H: np.ndarray, null: np.ndarray, p: np.ndarray) -> Curvature:
    """`curvature` of M = P^1/2 H P^1/2 for a diagonal preconditioner P = diag(p) `[P]` > 0 (E21: the
    modes of preconditioned SGD relax at gamma lam_i(M))."""
    half = np.sqrt(np.asarray(p, dtype=np.float64))
    return curvature(half[:, None] * H * half[None, :], preconditioned_null(null, p))


@dataclass(frozen=True)
class LocalConstants:
    """Local mu and L: extreme Hessian eigenvalues over sampled points of a ball around theta*.

    Attributes:
        mu, L: min of lambda_min and max of lambda_max over the points (on the range of H).
        radius: ball radius (Euclidean, in parameter space). n_points: sampled points (plus theta*).
        eig_min, eig_max: per point `[n_points + 1]` (theta* first).
        region: a sentence stating the region.
    """

    mu: float
    L: float
    radius: float
    n_points: int
    eig_min: np.ndarray = field(repr=False)
    eig_max: np.ndarray = field(repr=False)
    region: str = ""

    @property
    def kappa(self) -> float:
        return self.L / self.mu


def _ball_points(theta: np.ndarray, Q: np.ndarray, radius: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points uniform in the ball of `radius` around theta within the span of Q `[P, r]`."""
    u = rng.standard_normal((n, Q.shape[1]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    r = radius * rng.random(n) ** (1.0 / Q.shape[1])
    return theta[None] + (r[:, None] * u) @ Q.T


def local_constants(task: "Task", student: "Student", *, radius: float, n_points: int = 8, n_mc: int = 2048,
                    seed: int = 0) -> LocalConstants:
    """mu and L over theta* and `n_points` uniform points of the ball of `radius` around theta*.

    The Hessian at each point is `student.hessian` averaged over n_mc inputs with bcp targets (the
    Hessian of F for unbiased teachers), restricted to the range (full gauge).
    """
    radius = validation.nonnegative("radius", radius)
    n_points = validation.positive_int("n_points", n_points, minimum=0)
    star = theta_star(task, student).to(torch.float64).numpy()
    null = null_basis(student)
    Q = range_basis(len(star), null)
    pts = np.vstack([star[None], _ball_points(star, Q, radius, n_points, rng_mod.stream(seed, "theory.ball"))])
    x, _, p = sample_inputs(task, n_mc, seed, key=2)
    xs, ps = torch.as_tensor(x, dtype=student.dtype), torch.as_tensor(p, dtype=student.dtype)
    lo, hi = np.empty(len(pts)), np.empty(len(pts))
    for i, th in enumerate(pts):
        H = student.hessian(torch.as_tensor(th, dtype=student.dtype), xs, ps).detach().to(torch.float64).numpy()
        ev = np.linalg.eigvalsh(Q.T @ (0.5 * (H + H.T)) @ Q)
        lo[i], hi[i] = ev[0], ev[-1]
    region = (f"Hessian eigenvalues at theta* and {n_points} points uniform in the ball of radius {radius:g} "
              f"around theta* (Monte Carlo over {n_mc} inputs, seed {seed})" + (", on the range of H" if null.shape[1] else ""))
    return LocalConstants(float(lo.min()), float(hi.max()), radius, n_points, lo, hi, region)


def softmax_curvature_sup(num_classes: int, gauge: str) -> float:
    """c = sup_q lambda_max(diag q - q q^T) on the free rows: 1/2, except 1/4 for K = 2 pinned (E12)."""
    return 0.25 if (num_classes == 2 and gauge == "pinned") else 0.5


@dataclass(frozen=True)
class Smoothness:
    """Expected smoothness calL of a finite training set (E12, Gower et al. 2019 Prop. 3.8).

    Attributes:
        calL: the constant. L: c lambda_max(X~^T X~ / n) (smoothness of the empirical F).
        L_max: max_i L_i = c max_i ||xt_i||^2. n: training-set size. batch: b.
        target_factor: E(sum t)^2 multiplying both (1 for targets that sum to 1; 1 + K nu additive).
        formula: a sentence stating the formula.
    """

    calL: float
    L: float
    L_max: float
    n: int
    batch: int
    target_factor: float
    formula: str


def expected_smoothness(x: np.ndarray, num_classes: int, *, gauge: str = "pinned", features: str = "linear",
                        batch: int = 1, target_factor: float = 1.0) -> Smoothness:
    """calL for the linear softmax student on the training inputs x `[n, d]` (E12).

    L_i = c ||xt_i||^2 with c = 1/2 (1/4 for K = 2 pinned), L = c lambda_max(sum_i xt_i xt_i^T / n),
    calL(b) = n (b-1) / (b (n-1)) L + (n-b) / (b (n-1)) max_i L_i  (= max_i L_i at b = 1).
    Targets that do not sum to 1 scale the per-sample Hessian by s = sum t, so
    E||grad f_v(theta) - grad f_v(theta*)||^2 picks up E s^2 = `target_factor` (additive: 1 + K nu);
    the per-sample loss is then not convex where s < 0, and E12 holds for the expectation only.
    """
    x = validation.finite_array("x", x, ndim=2)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"x must hold n >= 2 training inputs, got n={n}")
    b = validation.positive_int("batch", batch)
    if b > n:
        raise ValueError(f"batch must be in [1, n={n}], got {b}")
    factor = validation.positive("target_factor", target_factor)
    c = softmax_curvature_sup(num_classes, gauge)
    xt = augmented(x, features)
    L_max = c * float((xt**2).sum(1).max())
    L = c * float(np.linalg.eigvalsh(xt.T @ xt / n)[-1])
    calL = n * (b - 1) / (b * (n - 1)) * L + (n - b) / (b * (n - 1)) * L_max
    formula = (f"E12 on a training set of n={n}: L_i = {c:g} ||xt_i||^2, batch b={b} (Gower et al. 2019, Prop. 3.8)"
               + (f", times E(sum t)^2 = {factor:.6g}" if factor != 1.0 else ""))
    return Smoothness(factor * calL, factor * L, factor * L_max, n, b, factor, formula)


def training_smoothness(task: "Task", student: "Student", n: int, *, batch: int = 1, seed: int = 0,
                        target_factor: float = 1.0) -> Smoothness:
    """`expected_smoothness` on n inputs drawn from the task (`rng.stream(seed, "theory.inputs", 3)`)."""
    fm = student.feature_model()
    if fm is None:
        raise ValueError(f"E12 holds for the linear softmax student, got {student.spec!r}; "
                         "use expected_smoothness_empirical")
    x, _, _ = sample_inputs(task, n, seed, key=3)
    gauge = "full" if fm.rows == task.num_classes else "pinned"
    return expected_smoothness(x, task.num_classes, gauge=gauge, features=fm.kind, batch=batch, target_factor=target_factor)


@dataclass(frozen=True)
class EmpiricalSmoothness:
    """Empirical expected smoothness: max over sampled theta of the ratio defining calL (DESIGN 2.6).

    Attributes:
        calL: the largest ratio (a lower estimate of the supremum), with its delta-method SE.
        ratios: per sampled theta `[M]`. radii: their distances to theta* `[M]`.
        region: a sentence stating where theta was sampled.
    """

    calL: Estimate
    ratios: np.ndarray = field(repr=False)
    radii: np.ndarray = field(repr=False)
    region: str


def expected_smoothness_empirical(task: "Task", student: "Student", teacher: Any = None, *,
                                  radii: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0), n_directions: int = 4,
                                  n_mc: int = 4096, seed: int = 0) -> EmpiricalSmoothness:
    """max_theta E||grad f_v(theta) - grad f_v(theta*)||^2 / (2 E_x KL(p || q_theta)).

    theta = theta* + r u with u uniform on the unit sphere (of the range, full gauge) and r in
    `radii` times ||theta*||. Numerator and denominator use the same n_mc inputs; the targets are
    drawn once from `teacher` (default: bcp, t = p) and shared by theta and theta*.
    """
    n_directions = validation.positive_int("n_directions", n_directions)
    star = theta_star(task, student).to(torch.float64).numpy()
    Q = range_basis(len(star), null_basis(student))
    rng = rng_mod.stream(seed, "theory.ball", 1)
    scale = float(np.linalg.norm(star)) or 1.0
    u = rng.standard_normal((len(radii) * n_directions, Q.shape[1]))
    u = (u / np.linalg.norm(u, axis=1, keepdims=True)) @ Q.T
    r = np.repeat(np.asarray(radii, dtype=np.float64) * scale, n_directions)
    thetas = np.vstack([star[None], star[None] + r[:, None] * u])
    x, y, p = sample_inputs(task, n_mc, seed, key=4)
    t = p if teacher is None else teacher.sample(p, y, rng_mod.stream(seed, "theory.targets", 4), x=x)
    R = len(thetas)
    th = torch.as_tensor(thetas, dtype=student.dtype)
    xs = torch.as_tensor(x, dtype=student.dtype).expand(R, *x.shape)
    ts = torch.as_tensor(t, dtype=student.dtype).expand(R, *t.shape)
    g = student.per_sample_grads(th, xs, ts).detach().to(torch.float64).numpy()
    num = ((g[1:] - g[:1]) ** 2).sum(-1)  # [M, N]
    logq = student.log_probs(th[1:], xs[1:]).detach().to(torch.float64).numpy()
    logp = np.log(p)
    kl = (p[None] * (logp[None] - logq)).sum(-1)  # [M, N]
    ratios = num.mean(1) / (2 * kl.mean(1))
    i = int(np.argmax(ratios))
    a, b = num[i], 2 * kl[i]
    se = ratio_of_means(a, b)[1]
    region = (f"max over theta* + r u, r in {tuple(radii)} x ||theta*|| = {scale:.4g}, {n_directions} random directions each, "
              f"{n_mc} inputs (seed {seed}), targets {'bcp' if teacher is None else teacher.spec}")
    return EmpiricalSmoothness(Estimate(float(ratios[i]), se, "empirical ratio (lower estimate of the sup), delta-method SE"),
                               ratios, r, region)


def f_star(task: "Task") -> Estimate:
    """F* = H(Y|X) in nats (Prop. 1), from the task (quadrature where cheap, else Monte Carlo)."""
    return task.conditional_entropy()
