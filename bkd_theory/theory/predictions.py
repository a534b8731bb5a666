"""Gradient noise at the optimum: sigma_T^2 and C_T for any teacher, and their closed forms.

DESIGN 2.5 (Prop. 3). With J_k(x) = d q_theta*,k(x) / d theta and G(x) the `[P, K]` matrix whose k-th
column is J_k / p_k (so G p = 0):

    (E3) grad l(theta*; x, t) = -G(x) t = -G(x) (t - p(x))
    (E4) sigma_T^2 = E_x tr(G Cov(t|x) G^T) + E_x ||G (tbar - p)||^2
    (E5) C_T = E grad l grad l^T = E_x G (Cov(t|x) + (tbar - p)(tbar - p)^T) G^T

`gradient_noise` is the general route (the student's gradient structure, `structure`, and the
teacher's exact `mean`/`cov`). `sigma2_closed_form` is the fast path E6-E9: a law's covariance in
closed form (`Teacher.cov_form`, a combination of the standard forms C_y, I, I - 11^T/K) against
the student's per-input traces of those forms (E11 for students with a feature model);
`critical_noise` is E10; `gradient_noise_monte_carlo` is the slow, obvious oracle: per-sample
gradients at theta* with sampled targets. All quantities live in the student's parameter space
(pinned gauge: the K-1 free rows only) and are per single sample (`bkd_theory.losses`).

Expectations over x are taken on `integrate.Nodes`: pass `at=` (quadrature or Monte Carlo nodes,
as `report.predict` does), or the functions draw `n_mc` Monte Carlo inputs from `seed`
(`rng.stream(seed, "theory.inputs", 0)`). Estimates of a single node set carry the per-input SE
(Monte Carlo) or 0 (quadrature, whose error bar comes from `Integrator.estimate`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from synthetic import validation
from synthetic.base import Estimate

from .. import rng as rng_mod
from ..stats import estimate, ratio_of_means
from ..teachers import Teacher, parse_teacher
from . import integrate
from .integrate import Nodes
from .structure import FeatureGradients, GradientModel, JacobianGradients, gradient_model

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..students import Student

DEFAULT_N_MC = 4096
_CHUNK = 1024


def sample_inputs(task: "Task", n: int, seed: int, key: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw n points of `task` from `rng.stream(seed, "theory.inputs", key)`: x `[n, d]`, y `[n]`, p(x) `[n, K]`."""
    n = validation.positive_int("n", n, minimum=2)
    x, y = task.sample(n, rng_mod.stream(seed, "theory.inputs", key))
    return x, y, np.exp(task.log_bcp(x))


def nodes_or_mc(task: "Task", n_mc: int, seed: int, at: Nodes | None) -> Nodes:
    """`at`, or `n_mc` Monte Carlo inputs from `seed` (the nodes of `integrate.monte_carlo`)."""
    return at if at is not None else integrate.monte_carlo(task, n_mc, seed).nodes


def theta_star(task: "Task", student: "Student") -> torch.Tensor:
    """Return theta* `[P]` in the student's dtype (ValueError if the student is not realizable)."""
    return student.optimum(task).to(student.dtype).reshape(-1)


def as_teacher(teacher: Any) -> Teacher:
    """A `Teacher` from a teacher or its spec (`teachers.parse_teacher`)."""
    return parse_teacher(teacher)


def teacher_moments(teacher: Any, nodes: Nodes) -> tuple[np.ndarray, np.ndarray]:
    """(tbar - p `[N, K]`, Cov(t|x) `[N, K, K]`) from the teacher's exact moments at the nodes."""
    teacher = as_teacher(teacher)
    mean = np.asarray(teacher.mean(nodes.p, x=nodes.x), np.float64)
    return mean - nodes.p, np.asarray(teacher.cov(nodes.p, x=nodes.x), np.float64)


def model(task: "Task", student: "Student", nodes: Nodes, route: str = "auto",
          theta: torch.Tensor | None = None) -> GradientModel:
    """The student's gradient structure at theta (default theta*) on `nodes`, by `route`:
    "linear" (the feature model, E11), "jacobian" (`prob_jacobian`) or "auto"."""
    validation.one_of("route", route, ("auto", "linear", "jacobian"))
    th = theta_star(task, student) if theta is None else theta.to(student.dtype)
    if route == "auto":
        return gradient_model(student, nodes, th)
    if route == "linear" and student.feature_model() is None:
        raise ValueError(f"route='linear' needs a student with a feature model (logits linear in features), "
                         f"got {student.spec!r}")
    return (FeatureGradients if route == "linear" else JacobianGradients)(student, nodes, th)


@dataclass(frozen=True)
class GradientNoise:
    """Gradient noise at theta* (E4, E5), per single sample.

    Attributes:
        sigma2: sigma_T^2 = E ||grad l(theta*)||^2. variance: E_x tr(G Cov G^T), the teacher-noise
            part. bias: E_x ||G (tbar - p)||^2, zero for unbiased teachers.
        C: the second-moment matrix E grad grad^T `[P, P]` (None when not asked for).
        method: how the expectation over x was taken.
    """

    sigma2: Estimate
    variance: Estimate
    bias: Estimate
    C: np.ndarray | None
    method: str


def noise_matrices(teacher: Any, nodes: Nodes) -> tuple[np.ndarray, np.ndarray]:
    """Per-node (Cov(t|x), Cov + (tbar - p)(tbar - p)^T) `[N, K, K]`: the inputs of E4 and E5."""
    db, cov = teacher_moments(teacher, nodes)
    return cov, cov + db[:, :, None] * db[:, None, :]


def gradient_noise(task: "Task", student: "Student", teacher: Any, *, n_mc: int = DEFAULT_N_MC, seed: int = 0,
                   matrix: bool = True, theta: torch.Tensor | None = None, at: Nodes | None = None) -> GradientNoise:
    """General route E3-E5: sigma_T^2 and C_T from the student's gradients and the teacher's moments.

    Args:
        task, student, teacher: the configuration (teacher: any `Teacher` or spec).
        n_mc, seed: Monte Carlo inputs when `at` is None. matrix: also compute C `[P, P]`.
        theta: evaluation point `[P]` (default theta*; E3 needs q_theta = p there).
        at: the nodes to integrate on.
    """
    nodes = nodes_or_mc(task, n_mc, seed, at)
    g = model(task, student, nodes, theta=theta)
    cov, second = noise_matrices(teacher, nodes)
    var_x, tot_x = g.traces(cov), g.traces(second)
    C = g.second_moment(second) if matrix else None
    method = f"E4 general route ({type(g).__name__}) on {nodes.method}"
    return GradientNoise(_mean(nodes, tot_x, method), _mean(nodes, var_x, method), _mean(nodes, tot_x - var_x, method),
                         C, method)


def _mean(nodes: Nodes, values: np.ndarray, method: str) -> Estimate:
    """The weighted mean of per-node values; SE across i.i.d. Monte Carlo nodes, 0 on quadrature nodes."""
    if nodes.iid:
        return estimate(values, method)
    return Estimate(float(nodes.mean(values)), 0.0, method)


def unit_traces(g: GradientModel) -> dict[str, np.ndarray]:
    """Per-node tr(G U_c G^T) of the standard covariance forms `[N]` ("label": C_y, the onehot sigma^2;
    "identity": additive noise at nu = 1; "tangent": tangent noise at nu = 1)."""
    return g.unit_traces()


def closed_form(teacher: Any) -> Any:
    """The teacher's covariance in closed form (`Teacher.cov_form`, E6-E9); ValueError when it has none."""
    teacher = as_teacher(teacher)
    form = teacher.cov_form()
    if form is None or not teacher.unbiased:
        raise ValueError(f"no closed form for teacher {teacher.spec!r}: the closed forms cover unbiased laws that "
                         "declare cov_form() (onehot, bcp, dirichlet, additive, tangent, and mc and mixture of "
                         "those); use gradient_noise (known moments) or gradient_noise_monte_carlo (any teacher)")
    return form


def sigma2_values(g: GradientModel, teacher: Any) -> np.ndarray:
    """Per-node sigma^2 by the closed form E6-E9: sum_c coef_c tr(G U_c G^T) `[N]`."""
    form = closed_form(teacher)
    units = unit_traces(g)
    terms = [a * units[name] for name, a in form.coef.items()]
    return np.zeros(len(g.nodes.w)) if not terms else (terms[0] if len(terms) == 1 else np.sum(terms, axis=0))


def sigma2_closed_form(task: "Task", student: "Student", teacher: Any, *, n_mc: int = DEFAULT_N_MC, seed: int = 0,
                       route: str = "auto", at: Nodes | None = None) -> Estimate:
    """sigma_T^2 by the fast paths E6-E9, at theta*, in the student's gauge.

    E6 onehot: E sum_k ||J_k||^2 / p_k. E7 additive: nu E sum_k ||J_k||^2 / p_k^2. Tangent:
    nu E [sum_k ||J_k||^2 / p_k^2 - ||sum_k J_k / p_k||^2 / K]. E8 dirichlet: onehot / (1 + alpha).
    E9 mc(S, base): base / S. E20 mixture(lam, base): the combination of forms of its covariance.

    Raises:
        ValueError: for teachers without a closed form (biased or teachers of x, clipped).
    """
    form = closed_form(teacher)
    if not form.coef:
        return Estimate(0.0, 0.0, f"{form.tag}: no gradient noise at theta*")
    nodes = nodes_or_mc(task, n_mc, seed, at)
    g = model(task, student, nodes, route)
    return _mean(nodes, sigma2_values(g, teacher), f"{form.tag} closed form ({type(g).__name__}) on {nodes.method}")


def sigma2_per_input(task: "Task", student: "Student", teacher: Any, x: np.ndarray, *, route: str = "auto") -> np.ndarray:
    """E[||grad l(theta*; x, t)||^2 | x] by the closed forms E6-E9, per input `[N]`."""
    x = validation.finite_array("x", x, ndim=2)
    nodes = Nodes(x, np.exp(task.log_bcp(x)), np.full(len(x), 1.0 / len(x)), None, "given inputs")
    return sigma2_values(model(task, student, nodes, route), teacher)


def critical_ratio(g: GradientModel) -> float:
    """E10 on the nodes: E tr(G C_y G^T) / E tr(G G^T)."""
    u = unit_traces(g)
    return float(g.nodes.mean(u["label"]) / g.nodes.mean(u["identity"]))


def critical_noise(task: "Task", student: "Student", *, n_mc: int = DEFAULT_N_MC, seed: int = 0, route: str = "auto",
                   at: Nodes | None = None) -> Estimate:
    """E10: nu_c = E sum_k ||J_k||^2/p_k / E sum_k ||J_k||^2/p_k^2 (additive noise as noisy as onehot).

    A ratio of two means on the same nodes; on Monte Carlo nodes the SE is the delta-method one.
    Gauge-dependent.
    """
    nodes = nodes_or_mc(task, n_mc, seed, at)
    g = model(task, student, nodes, route)
    u = unit_traces(g)
    a, b = u["label"], u["identity"]
    r = critical_ratio(g)
    se = ratio_of_means(a, b)[1] if nodes.iid else 0.0  # r = mean(a) / mean(b) on i.i.d. nodes
    return Estimate(r, se, f"E10 ratio estimator ({type(g).__name__}) on {nodes.method}")


def per_sample_gradients(student: "Student", teacher: Any, x: np.ndarray, y: np.ndarray, p: np.ndarray,
                         rng: np.random.Generator, theta: torch.Tensor) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (rows, grad l(theta; x_n, t_n) `[B, P]` float64) with t drawn once from `teacher.sample`."""
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
                    at: Nodes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-node Hessian factors U `[N, P, K]` at theta* (H_x = U U^T = G diag(p) G^T) and the node weights `[N]`.

    At a realizable optimum the Hessian of l(theta; x, p(x)) is sum_k J_k J_k^T / p_k (the second
    derivatives of q cancel because sum_k q_k = 1), so U[:, k] = J_k / sqrt(p_k). Exact points only.
    """
    nodes = nodes_or_mc(task, n_mc, seed, at)
    return model(task, student, nodes).factors(), nodes.w


def target_sum_sq(task: "Task", teacher: Any, *, n_mc: int = DEFAULT_N_MC, seed: int = 0,
                  at: Nodes | None = None) -> np.ndarray:
    """E[(sum_k t_k)^2 | x] = 1^T Cov 1 + (1^T tbar)^2 per node `[N]`."""
    db, cov = teacher_moments(teacher, nodes_or_mc(task, n_mc, seed, at))
    return cov.sum(axis=(1, 2)) + (1.0 + db.sum(1)) ** 2
