"""Gradient noise at the optimum: sigma_T^2 and C_T for any teacher, and their closed forms.

DESIGN 2.5 (Prop. 3). With J_k(x) = d q_theta*,k(x) / d theta and G(x) the `[P, K]` matrix whose k-th
column is J_k / p_k (so G p = 0):

    (E3) grad l(theta*; x, t) = -G(x) t = -G(x) (t - p(x))
    (E4) sigma_T^2 = E_x tr(G Cov(t|x) G^T) + E_x ||G (tbar - p)||^2
    (E5) C_T = E grad l grad l^T = E_x G (Cov(t|x) + (tbar - p)(tbar - p)^T) G^T

`gradient_noise` is the general route (Jacobians from `student.prob_jacobian`, the teacher's exact
`mean`/`cov`, Monte Carlo over x with SE). `sigma2_closed_form` holds the fast paths E6-E9 (and
the linear-student forms of E11, in both gauges), `critical_noise` is E10, and
`gradient_noise_monte_carlo` is the slow, obvious oracle: per-sample gradients at theta* with
sampled targets. All quantities live in the student's parameter space (pinned gauge: the K-1 free
rows only) and are per single sample (the reduction convention of `bkd_theory.losses`). A teacher
argument is any `teachers.Teacher` (laws, composites, teachers of x) or its spec string, parsed
once by `teachers.parse_teacher`. A law's closed form is its own `cov_form()`; a student's closed
form (E11) is read from its declared `feature_model()`.

Linear student, E11 at theta* (q = p, s = sum_k t_k), per input x:
    full gauge:   onehot  ||xt||^2 (1 - ||p||^2)
                  additive nu ||xt||^2 (K - 2 + K ||p||^2)
                  tangent  nu ||xt||^2 (K - 1)
    pinned gauge: onehot  ||xt||^2 (1 - ||p||^2 - p_K (1 - p_K))
                  additive nu ||xt||^2 (K (||p||^2 - p_K^2) + K - 3 + 2 p_K)
                  tangent  nu ||xt||^2 (K - 1)^2 / K
(pinned = full minus the K-th row of E11: E(s p_K - t_K)^2 ||xt||^2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch

from synthetic import validation
from synthetic.base import Estimate

from .. import rng as rng_mod
from ..stats import estimate
from ..teachers import Teacher, parse_teacher

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..students import Student

DEFAULT_N_MC = 4096
_CHUNK = 1024


def sample_inputs(task: "Task", n: int, seed: int, key: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw n points of `task` from `rng.stream(seed, "theory.inputs", key)`.

    Returns:
        x `[n, d]`, y `[n]` and p(x) `[n, K]` (computed in log space by the task).
    """
    n = validation.positive_int("n", n, minimum=2)
    x, y = task.sample(n, rng_mod.stream(seed, "theory.inputs", key))
    return x, y, np.exp(task.log_bcp(x))


def theta_star(task: "Task", student: "Student") -> torch.Tensor:
    """Return theta* `[P]` in the student's dtype (ValueError if the student is not realizable)."""
    return student.optimum(task).to(student.dtype).reshape(-1)


def log_jacobians(student: "Student", theta: torch.Tensor, x: np.ndarray, p: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (rows, G^T) chunks: G^T[n, k] = J_k(x_n) / p_k(x_n) `[B, K, P]` float64 (DESIGN 2.5).

    J comes from `student.prob_jacobian` at `theta`; p is the true BCP, equal to q_theta* at a
    realizable optimum.
    """
    if np.any(p <= 0):
        raise ValueError("p(x) underflowed to 0 for some x: G = J / p is undefined there; use a better-conditioned task")
    for start in range(0, len(x), _CHUNK):
        rows = slice(start, min(start + _CHUNK, len(x)))
        J = student.prob_jacobian(theta, torch.as_tensor(x[rows], dtype=student.dtype))
        yield rows, J.detach().to(torch.float64).numpy() / p[rows, :, None]


def as_teacher(teacher: Any) -> Teacher:
    """A `Teacher` from a teacher or its spec (`teachers.parse_teacher`)."""
    return parse_teacher(teacher)


def teacher_moments(teacher: Any, x: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (tbar - p `[N, K]`, Cov(t|x) `[N, K, K]`) from the teacher's exact moments at x."""
    teacher = as_teacher(teacher)
    mean, cov = np.asarray(teacher.mean(p, x=x), np.float64), np.asarray(teacher.cov(p, x=x), np.float64)
    return mean - p, cov


@dataclass(frozen=True)
class JacobianSample:
    """Monte Carlo inputs with their BCPs and G^T = J / p at theta*, computed once and shared.

    Attributes:
        x: inputs `[N, d]`. p: BCPs `[N, K]`. Gt: J_k / p_k `[N, K, P]` (memory N K P floats).
        n_mc, seed: as passed to `jacobian_sample` (the inputs of `sample_inputs(task, n_mc, seed)`).
    """

    x: np.ndarray = field(repr=False)
    p: np.ndarray = field(repr=False)
    Gt: np.ndarray = field(repr=False)
    n_mc: int
    seed: int

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """The same (rows, G^T) chunks as `log_jacobians`."""
        for start in range(0, len(self.x), _CHUNK):
            rows = slice(start, min(start + _CHUNK, len(self.x)))
            yield rows, self.Gt[rows]


def jacobian_sample(task: "Task", student: "Student", *, n_mc: int = DEFAULT_N_MC, seed: int = 0) -> JacobianSample:
    """Compute the inputs of `sample_inputs(task, n_mc, seed)` and their G^T once (see JacobianSample)."""
    x, _, p = sample_inputs(task, n_mc, seed)
    Gt = np.empty((len(x), p.shape[1], student.num_params))
    for rows, g in log_jacobians(student, theta_star(task, student), x, p):
        Gt[rows] = g
    return JacobianSample(x, p, Gt, n_mc, seed)


def _inputs(task: "Task", student: "Student", n_mc: int, seed: int, jac: JacobianSample | None,
            theta: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, Callable[[], Iterator[tuple[slice, np.ndarray]]]]:
    """(x, p, chunks) from a shared JacobianSample, or drawn afresh (Jacobians at theta, default theta*)."""
    if jac is not None:
        return jac.x, jac.p, jac.chunks
    x, _, p = sample_inputs(task, n_mc, seed)
    th = theta_star(task, student) if theta is None else theta.to(student.dtype)
    return x, p, lambda: log_jacobians(student, th, x, p)


@dataclass(frozen=True)
class GradientNoise:
    """Gradient noise at theta* (E4, E5), per single sample.

    Attributes:
        sigma2: sigma_T^2 = E ||grad l(theta*)||^2 with its Monte Carlo SE over x.
        variance: E_x tr(G Cov G^T), the teacher-noise part.
        bias: E_x ||G (tbar - p)||^2, zero for unbiased teachers.
        C: the second-moment matrix E grad grad^T `[P, P]` (None when not asked for).
        method: how the expectation over x was taken.
    """

    sigma2: Estimate
    variance: Estimate
    bias: Estimate
    C: np.ndarray | None
    method: str


def gradient_noise(task: "Task", student: "Student", teacher: Any, *, n_mc: int = DEFAULT_N_MC, seed: int = 0,
                   matrix: bool = True, theta: torch.Tensor | None = None, jac: JacobianSample | None = None) -> GradientNoise:
    """General route E3-E5: sigma_T^2 and C_T from Jacobians and the teacher's exact moments.

    Args:
        task, student, teacher: the configuration (teacher: any law with `mean`/`cov`).
        n_mc: Monte Carlo inputs x (from `rng.stream(seed, "theory.inputs", 0)`).
        seed: seed.
        matrix: also accumulate C `[P, P]` (memory P^2).
        theta: evaluation point `[P]` (default theta*; E3 needs q_theta = p there).
        jac: a shared `JacobianSample` (replaces n_mc, seed and theta).
    """
    x, p, chunks = _inputs(task, student, n_mc, seed, jac, theta)
    db, cov = teacher_moments(teacher, x, p)
    var_x, bias_x = np.empty(len(x)), np.empty(len(x))
    P = student.num_params
    C = np.zeros((P, P)) if matrix else None
    for rows, Gt in chunks():
        gram = np.einsum("nkp,nlp->nkl", Gt, Gt)
        var_x[rows] = np.einsum("nkl,nkl->n", cov[rows], gram)
        bias_x[rows] = np.einsum("nk,nkl,nl->n", db[rows], gram, db[rows])
        if C is not None:
            M = cov[rows] + db[rows, :, None] * db[rows, None, :]
            A = np.einsum("nkl,nlq->nkq", M, Gt)
            C += Gt.reshape(-1, P).T @ A.reshape(-1, P)
    method = f"E4 general route: prob_jacobian + teacher moments, Monte Carlo over x (n={n_mc}, seed={seed})"
    if C is not None:
        C = 0.5 * (C + C.T) / len(x)
    return GradientNoise(estimate(var_x + bias_x, method), estimate(var_x, method), estimate(bias_x, method), C, method)


def _feature_forms(student: "Student", x: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Per-input tr(G U_c G^T) of the standard forms U_c `[N]` for a student linear in features (E11).

    With logits W phi~(x) on K' free rows, G = E(p) kron phi~ with E_jk = delta_jk - p_j (j < K'), so
    tr(G U G^T) = ||phi~||^2 tr(E U E^T); written out (module docstring) for the full (K' = K) and
    pinned (K' = K - 1) gauges.
    """
    fm = student.feature_model()
    xt2 = (fm.features(x) ** 2).sum(1)
    K, pp, pK = p.shape[1], (p**2).sum(1), p[:, -1]
    if fm.rows == K:
        f = {"label": 1 - pp, "identity": K - 2 + K * pp, "tangent": np.full_like(pp, K - 1.0)}
    else:
        f = {"label": 1 - pp - pK * (1 - pK), "identity": K * (pp - pK**2) + K - 3 + 2 * pK,
             "tangent": np.full_like(pp, (K - 1.0) ** 2 / K)}
    return {k: xt2 * v for k, v in f.items()}


def _unit_forms(student: "Student", chunks: Callable[[], Iterator[tuple[slice, np.ndarray]]] | None, x: np.ndarray,
                p: np.ndarray, route: str) -> dict[str, np.ndarray]:
    """Per-input tr(G U_c G^T) of the standard covariance forms `[N]` ("label": C_y, the onehot
    sigma^2; "identity": additive noise at nu = 1; "tangent": tangent noise at nu = 1), by `route`:
    "linear" (the student's feature model, E11), "jacobian" (sums of ||J_k||^2 / p_k^a) or "auto"."""
    validation.one_of("route", route, ("auto", "linear", "jacobian"))
    if route == "auto":
        route = "linear" if student.feature_model() is not None else "jacobian"
    if route == "linear":
        if student.feature_model() is None:
            raise ValueError(f"route='linear' needs a student with a feature model (logits linear in features), "
                             f"got {student.spec!r}")
        return _feature_forms(student, x, p)
    if chunks is None:
        raise ValueError("theta (theta* [P]) is required by route='jacobian'")
    s = {k: np.empty(len(x)) for k in ("s1", "s2", "s3")}
    for rows, Gt in chunks():
        sq = np.einsum("nkp,nkp->nk", Gt, Gt)
        s["s1"][rows] = (p[rows] * sq).sum(1)
        s["s2"][rows] = sq.sum(1)
        s["s3"][rows] = np.einsum("np,np->n", Gt.sum(1), Gt.sum(1))
    K = p.shape[1]
    return {"label": s["s1"], "identity": s["s2"], "tangent": s["s2"] - s["s3"] / K}


def closed_form(teacher: Any) -> Any:
    """The teacher's covariance in closed form (`Teacher.cov_form`, E6-E9); ValueError when it has none."""
    teacher = as_teacher(teacher)
    form = teacher.cov_form()
    if form is None or not teacher.unbiased:
        raise ValueError(f"no closed form for teacher {teacher.spec!r}: the closed forms cover unbiased laws that "
                         "declare cov_form() (onehot, bcp, dirichlet, additive, tangent, and mc and mixture of "
                         "those); use gradient_noise (known moments) or gradient_noise_monte_carlo (any teacher)")
    return form


def _combine(form: Any, units: dict[str, np.ndarray], n: int) -> np.ndarray:
    """sum_c coef_c units_c `[n]` (per-input sigma^2 of a closed-form covariance)."""
    terms = [a * units[name] for name, a in form.coef.items()]
    return np.zeros(n) if not terms else (terms[0] if len(terms) == 1 else np.sum(terms, axis=0))


def sigma2_per_input(student: "Student", teacher: Any, x: np.ndarray, p: np.ndarray, *, route: str = "auto",
                     theta: torch.Tensor | None = None) -> np.ndarray:
    """E[||grad l(theta*; x, t)||^2 | x] by the closed forms E6-E9, per input `[N]`.

    Args:
        x, p: inputs `[N, d]` and their BCPs `[N, K]`. theta: theta* `[P]` (needed by the
            Jacobian route; default: none, which the linear route does not use).
        route: "linear" (E11 factors), "jacobian" (sums of ||J_k||^2 / p_k^a) or "auto".
    """
    form = closed_form(teacher)
    if not form.coef:
        return np.zeros(len(x))
    chunks = None if theta is None else (lambda: log_jacobians(student, theta.to(student.dtype), x, p))
    return _combine(form, _unit_forms(student, chunks, x, p, route), len(x))


def sigma2_closed_form(task: "Task", student: "Student", teacher: Any, *, n_mc: int = DEFAULT_N_MC, seed: int = 0,
                       route: str = "auto", jac: JacobianSample | None = None) -> Estimate:
    """sigma_T^2 by the fast paths E6-E9, at theta*, in the student's gauge.

    E6 onehot: E sum_k ||J_k||^2 / p_k. E7 additive: nu E sum_k ||J_k||^2 / p_k^2. Tangent:
    nu E [sum_k ||J_k||^2 / p_k^2 - ||sum_k J_k / p_k||^2 / K]. E8 dirichlet: onehot / (1 + alpha).
    E9 mc(S, base): base / S. bcp: 0 (Prop. 2).

    Args:
        route: "linear" (E11 factors for the linear student, module docstring), "jacobian"
            (the J sums above, any student) or "auto" (linear when possible).

    Raises:
        ValueError: for teachers without a closed form (biased or trained teachers, clipped).
    """
    form = closed_form(teacher)
    if not form.coef:
        return Estimate(0.0, 0.0, f"{form.tag}: no gradient noise at theta*")
    x, p, chunks = _inputs(task, student, n_mc, seed, jac)
    v = _combine(form, _unit_forms(student, chunks, x, p, route), len(x))
    return estimate(v, f"{form.tag} closed form ({route} route), Monte Carlo over x (n={n_mc}, seed={seed})")


def critical_noise(task: "Task", student: "Student", *, n_mc: int = DEFAULT_N_MC, seed: int = 0, route: str = "auto",
                   jac: JacobianSample | None = None) -> Estimate:
    """E10: nu_c = E sum_k ||J_k||^2/p_k / E sum_k ||J_k||^2/p_k^2 (additive noise as noisy as onehot).

    A ratio of two means on the same inputs; the SE is the delta-method one. Gauge-dependent.
    """
    x, p, chunks = _inputs(task, student, n_mc, seed, jac)
    v = _unit_forms(student, chunks, x, p, route)
    a, b = v["label"], v["identity"]
    r = a.mean() / b.mean()
    se = float(np.std(a - r * b, ddof=1) / np.sqrt(len(a)) / b.mean())
    return Estimate(float(r), se, f"E10 ratio estimator ({route} route), delta-method SE (n={n_mc}, seed={seed})")


def per_sample_gradients(student: "Student", teacher: Any, x: np.ndarray, y: np.ndarray, p: np.ndarray,
                         rng: np.random.Generator, theta: torch.Tensor) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (rows, grad l(theta; x_n, t_n) `[B, P]` float64) with t drawn once from `teacher.sample`.

    """
    t = as_teacher(teacher).sample(p, y, rng, x=x)
    for start in range(0, len(x), _CHUNK):
        rows = slice(start, min(start + _CHUNK, len(x)))
        g = student.per_sample_grads(theta[None], torch.as_tensor(x[None, rows], dtype=student.dtype),
                                     torch.as_tensor(t[None, rows], dtype=student.dtype))[0]
        yield rows, g.detach().to(torch.float64).numpy()


def gradient_noise_monte_carlo(task: "Task", student: "Student", teacher: Any, *, n: int = 10_000, seed: int = 0,
                               matrix: bool = False, theta: torch.Tensor | None = None) -> tuple[Estimate, np.ndarray | None]:
    """The oracle: E ||grad l(theta*; x, t)||^2 from per-sample gradients with sampled targets.

    Draws (x, y) from the task and t from `teacher.sample` (its own stream), then averages
    ||student.per_sample_grads||^2. Works for any teacher, including ones without known moments.
    SE: normal theory over the n i.i.d. samples (slightly optimistic for heavy-tailed onehot norms,
    DESIGN 2.9).

    Returns:
        (sigma2 Estimate, second-moment matrix `[P, P]` or None).
    """
    theta = theta_star(task, student) if theta is None else theta.to(student.dtype)
    x, y, p = sample_inputs(task, n, seed, key=1)
    sq = np.empty(len(x))
    P = student.num_params
    C = np.zeros((P, P)) if matrix else None
    for rows, g in per_sample_gradients(student, teacher, x, y, p, rng_mod.stream(seed, "theory.targets", 1), theta):
        sq[rows] = (g**2).sum(1)
        if C is not None:
            C += g.T @ g
    return estimate(sq, f"Monte Carlo of per-sample gradients with sampled targets (n={n}, seed={seed})"), (
        None if C is None else C / n)


def hessian_factors(task: "Task", student: "Student", *, n_mc: int = DEFAULT_N_MC, seed: int = 0,
                    jac: JacobianSample | None = None) -> np.ndarray:
    """Per-sample Hessian factors U `[N, P, K]` at theta*: H_x = U U^T = G diag(p) G^T.

    At a realizable optimum the Hessian of l(theta; x, p(x)) is sum_k J_k J_k^T / p_k (the second
    derivatives of q cancel because sum_k q_k = 1), so U[:, k] = J_k / sqrt(p_k). Same inputs as
    `gradient_noise` for the same (n_mc, seed), or those of `jac`.
    """
    x, p, chunks = _inputs(task, student, n_mc, seed, jac)
    U = np.empty((len(x), student.num_params, p.shape[1]))
    for rows, Gt in chunks():
        U[rows] = (Gt * np.sqrt(p[rows])[:, :, None]).transpose(0, 2, 1)
    return U


def target_sum_sq(task: "Task", teacher: Any, *, n_mc: int = DEFAULT_N_MC, seed: int = 0, key: int = 0) -> np.ndarray:
    """E[(sum_k t_k)^2 | x] = 1^T Cov 1 + (1^T tbar)^2 per input `[N]` (same inputs as `gradient_noise`)."""
    x, _, p = sample_inputs(task, n_mc, seed, key)
    db, cov = teacher_moments(teacher, x, p)
    return cov.sum(axis=(1, 2)) + (1.0 + db.sum(1)) ** 2
