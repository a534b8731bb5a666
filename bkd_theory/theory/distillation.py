"""The distillation protocol's sharp predictions (DESIGN 2.10): the KD mixture (E20), preconditioned
SGD and Adam (E21), and the teacher-temperature floor (E22 b).

E20. Targets t_lam = (1 - lam) e_y + lam t_T. With X = Cov(e_y, t_T | x), the noise at theta* is
quadratic in lam, on the gradient scale and on the H^-1 scale of E18:

    sigma^2(lam)       = a (1 - lam)^2 + b lam^2 + 2 c lam (1 - lam)       a = sigma^2_onehot, b = sigma^2_T,
    tr H^-1 C(lam)     = a' (1 - lam)^2 + b' lam^2 + 2 c' lam (1 - lam)    c = E tr G X G^T (0 if t_T ignores y)

A biased teacher (tbar_T != p) moves the minimiser to theta_lam ~ theta* + lam H^-1 m,
m = E G (tbar_T - p) (E3), at an excess risk lam^2 B / 2, B = m^T H^+ m. Then (derivation in
`KDNoise`), to first order in gamma and 1/n,

    stationary  E[F - F*] ~ lam^2 B / 2 + gamma sigma^2(lam) / (4b)
                lam*_gamma = gamma (a - c) / (2b) / (B + gamma (a + b - 2c) / (2b))
    finite n    E[F - F*] ~ lam^2 B / 2 + tr H^-1 C(lam) / (2n)
                lam*_n     = (a' - c') / n / (B + (a' + b' - 2c') / n)

(E20 as written in DESIGN is the case c = c' = 0, a' = p). Both are clipped to [0, 1].

E21. theta <- theta - gamma P g with a fixed SPD P: P H S + S H P = gamma P C P / b to first order,
whose trace gives exactly E[F - F*] = tr(H S) / 2 = gamma tr(P C) / (4b). Adam near theta* has
v -> diag(C) / b, so P = diag(1 / (sqrt(C_ii / b) + eps)) and E[F - F*] = (gamma / 4b) sum_i
C_ii / (sqrt(C_ii / b) + eps) -> (gamma / 4) sum_i sqrt(C_ii / b) for eps << sqrt(C_ii / b).

`kd_exact` drops E20's expansion in the bias: theta_lam by Newton on the quadrature nodes, the exact
F(theta_lam) - F* and tr C, tr H^-1 C at theta_lam (the cross terms grad F(theta_lam) . E[delta],
O(lam gamma) and O(lam / n), are left out); `lambda_star_exact` minimises it over lam.

E22 (b). A teacher-only temperature tau gives targets softmax(log p / tau), realizable by the linear
student of a shared-covariance Gaussian mixture (at theta* / tau), so SGD converges to a floor
E_x KL(p || softmax(log p / tau)) with no neighborhood.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from synthetic import validation
from synthetic.base import Estimate

from ..stats import estimate
from ..teachers import Mixture, parse_teacher
from . import predictions
from .integrate import Nodes

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..students import Student


@dataclass(frozen=True)
class KDNoise:
    """The coefficients of E20 for one (task, student, teacher) (module docstring).

    Attributes:
        a, b, c: sigma^2 of the labels, of the teacher, and their cross term (gradient scale).
        a_h, b_h, c_h: the same on the H^-1 scale (tr H^+ C); a_h = rank(H) for one-hot labels.
        B: m^T H^+ m, twice the excess risk of the lam = 1 minimiser of a biased teacher (0 if unbiased).
        m: E G (tbar_T - p) `[P]`.
    """

    a: float
    b: float
    c: float
    a_h: float
    b_h: float
    c_h: float
    B: float
    m: np.ndarray

    def sigma2(self, lam: float) -> float:
        """sigma^2(lam) at theta* (the noise part; the bias moves the minimiser instead)."""
        return self.a * (1 - lam) ** 2 + self.b * lam**2 + 2 * self.c * lam * (1 - lam)

    def neighborhood(self, lam: float, gamma: float, batch: int = 1) -> float:
        """Stationary E[F - F*] ~ lam^2 B / 2 + gamma sigma^2(lam) / (4b) (nats)."""
        return lam**2 * self.B / 2 + gamma * self.sigma2(lam) / (4 * batch)

    def finite_n(self, lam: float, n: int) -> float:
        """Excess risk of the minimiser on n frozen points ~ lam^2 B / 2 + tr H^+ C(lam) / (2n) (nats)."""
        trace = self.a_h * (1 - lam) ** 2 + self.b_h * lam**2 + 2 * self.c_h * lam * (1 - lam)
        return lam**2 * self.B / 2 + trace / (2 * n)

    def lambda_star(self, gamma: float, batch: int = 1) -> float:
        """The lam in [0, 1] minimising `neighborhood`: d/dlam = lam B + (gamma / 2b) (lam (a + b - 2c) - (a - c))."""
        g = gamma / (2 * batch)
        return _clip(g * (self.a - self.c), self.B + g * (self.a + self.b - 2 * self.c))

    def lambda_star_n(self, n: int) -> float:
        """The lam in [0, 1] minimising `finite_n`."""
        return _clip((self.a_h - self.c_h) / n, self.B + (self.a_h + self.b_h - 2 * self.c_h) / n)

    @property
    def lambda_var(self) -> float:
        """The lam minimising sigma^2(lam): (a - c) / (a + b - 2c) (E20; 1 for exact BCPs)."""
        return _clip(self.a - self.c, self.a + self.b - 2 * self.c)


def _clip(num: float, den: float) -> float:
    if den <= 0:
        return 1.0 if num > 0 else 0.0
    return float(min(max(num / den, 0.0), 1.0))


def kd_noise(task: "Task", student: "Student", teacher: Any, nodes: Nodes) -> KDNoise:
    """E20's coefficients on the integration nodes, from the exact moments of `Mixture(lam, teacher)`
    at lam = 0, 1/2, 1 (sigma^2(lam) is quadratic, so three values fix it)."""
    teacher = parse_teacher(teacher)
    g = predictions.model(task, student, nodes)
    H = g.second_moment(np.einsum("nk,kl->nkl", nodes.p, np.eye(nodes.p.shape[1])))
    Hp = np.linalg.pinv(H, hermitian=True, rcond=1e-10)
    s, h = [], []
    for lam in (0.0, 0.5, 1.0):
        cov = predictions.teacher_moments(Mixture(lam, teacher), nodes)[1]
        s.append(float(nodes.mean(g.traces(cov))))
        h.append(float(np.sum(Hp * g.second_moment(cov))))
    db = predictions.teacher_moments(teacher, nodes)[0]
    m = g.mean(db)
    coef = lambda v: (v[0], v[2], 2 * v[1] - (v[0] + v[2]) / 2)  # noqa: E731  v(1/2) = (a + b + 2c) / 4
    return KDNoise(*coef(s), *coef(h), B=float(m @ Hp @ m), m=m)


def preconditioned_neighborhood(C: np.ndarray, P: np.ndarray, gamma: float, batch: int = 1) -> float:
    """E21: stationary E[F - F*] = gamma tr(P C) / (4b) for theta <- theta - gamma P g (nats)."""
    validation.positive("gamma", gamma)
    return float(gamma * np.sum(np.asarray(P) * np.asarray(C).T) / (4 * batch))


def adam_neighborhood(C: np.ndarray, gamma: float, batch: int = 1, eps: float = 1e-8) -> float:
    """E21 for Adam: P = diag(1 / (sqrt(C_ii / b) + eps)), so E[F - F*] = (gamma / 4b) sum_i C_ii /
    (sqrt(C_ii / b) + eps) (nats); eps -> 0 gives (gamma / 4) sum_i sqrt(C_ii / b)."""
    validation.positive("gamma", gamma)
    validation.nonnegative("eps", eps)
    c = np.clip(np.diag(np.asarray(C)), 0.0, None)
    return float(gamma * np.sum(c / (np.sqrt(c / batch) + eps)) / (4 * batch))


def adam_preconditioner(C: np.ndarray, batch: int = 1, eps: float = 1e-8) -> np.ndarray:
    """E21: Adam's diagonal preconditioner near theta*, P_ii = 1 / (sqrt(C_ii / b) + eps) `[P]`
    (param^2 per nat per unit gamma; v_hat -> E g^2 = diag(C) / b at theta*)."""
    validation.positive("eps", eps)
    c = np.clip(np.diag(np.asarray(C, dtype=np.float64)), 0.0, None)
    return 1.0 / (np.sqrt(c / validation.positive_int("batch", batch)) + eps)


def preconditioned_covariance(H: np.ndarray, C: np.ndarray, P: np.ndarray, gamma: float, batch: int = 1,
                              null: np.ndarray | None = None) -> np.ndarray:
    """E21: S `[P, P]` (param^2) solving P H S + S H P = gamma P C P / b for a diagonal P `[P]`, on the
    range of H: with u = P^-1/2 delta it is E17' for M = P^1/2 H P^1/2 and C_u = P^1/2 C P^1/2."""
    from . import stationary

    p = validation.finite_array("P", P, ndim=1)
    half = np.sqrt(p)
    M = half[:, None] * np.asarray(H) * half[None, :]
    Cu = half[:, None] * np.asarray(C) * half[None, :]
    Q = None
    if null is not None and null.shape[1]:
        from .constants import preconditioned_null, range_basis

        Q = range_basis(len(half), preconditioned_null(null, p))
    U = stationary.lyapunov_covariance(M, Cu, gamma, batch, Q=Q)
    return half[:, None] * U * half[None, :]


def kd_rows(kd: KDNoise, lam: float, gamma: float, batch: int = 1, n: int | None = None) -> dict[str, float]:
    """The E20 numbers of `bkd predict` for KD weight `lam` at (gamma, b) and, given n, finite n:
    kd_sigma2 (grad^2 per sample), lambda_var, lambda_star, lambda_star_n (1), kd_bias_B (nat),
    kd_excess_risk, kd_finite_n_excess_risk (nat)."""
    out = {"kd_sigma2": kd.sigma2(lam), "lambda_var": kd.lambda_var, "kd_bias_B": kd.B,
           "lambda_star": kd.lambda_star(gamma, batch), "kd_excess_risk": kd.neighborhood(lam, gamma, batch)}
    if n is not None:
        out.update(lambda_star_n=kd.lambda_star_n(n), kd_finite_n_excess_risk=kd.finite_n(lam, n))
    return out


@dataclass(frozen=True)
class KDExact:
    """E20 without its expansion in the bias, at one lam (nats; the SGD / finite-n cross terms
    grad F(theta_lam) . E[theta - theta_lam], O(lam gamma) and O(lam / n), are not included).

    Attributes:
        bias: F(theta_lam) - F* at the population minimiser theta_lam of the KD objective (E20
            expands it as lam^2 B / 2). trace_C, trace_HC: tr C_lam and tr H_lam^-1 C_lam at theta_lam
            (the gradient second moment, so the part of the bias that varies with x is included).
    """

    bias: float
    trace_C: float
    trace_HC: float

    def neighborhood(self, gamma: float, batch: int = 1) -> float:
        return self.bias + gamma * self.trace_C / (4 * batch)

    def finite_n(self, n: int) -> float:
        return self.bias + self.trace_HC / (2 * n)


def _jacobian(student: "Student", theta: Any, x: Any, K: int) -> Any:
    """J `[N, K, P]` = d log q_k / d theta at theta, from the student's per-sample gradients: the
    gradient of CE(t, q) is -J^T t for targets summing to 1, so J_k = -grad CE(e_k, q)."""
    import torch

    eye = torch.eye(K, dtype=x.dtype)
    return torch.stack([-student.per_sample_grads(theta[None], x[None], eye[k].expand(len(x), K)[None])[0]
                        for k in range(K)], dim=1)


def kd_exact(task: "Task", student: "Student", teacher: Any, lam: float, nodes: Nodes, newton_steps: int = 12) -> KDExact:
    """`KDExact` of Mixture(lam, teacher) on exact nodes for a student whose Hessian is target-free
    (linear softmax: H = E J^T diag(q) J): theta_lam by Newton on the weighted nodes from theta*,
    then the bias and the traces at theta_lam."""
    import torch

    if not nodes.exact or student.feature_model() is None:
        raise ValueError("kd_exact needs exact points and a student with a feature model (linear softmax)")
    db, cov = predictions.teacher_moments(Mixture(lam, parse_teacher(teacher)), nodes)
    x, w = torch.from_numpy(nodes.x), torch.from_numpy(nodes.w)
    p, tbar, cov_t = torch.from_numpy(nodes.p), torch.from_numpy(nodes.p + db), torch.from_numpy(cov)
    K = p.shape[1]
    th = student.optimum(task).to(torch.float64).clone()
    for _ in range(newton_steps + 1):
        J, q = _jacobian(student, th, x, K), student.log_probs(th[None], x[None])[0].exp()
        H = torch.einsum("n,nk,nkp,nkq->pq", w, q, J, J)
        g = -torch.einsum("n,nk,nkp->p", w, tbar, J)
        step = torch.linalg.pinv(H, hermitian=True) @ g
        if float(step.norm()) < 1e-12 * max(1.0, float(th.norm())):
            break
        th = th - step
    lq = student.log_probs(th[None], x[None])[0]
    bias = float((w * (p * (torch.log(p.clamp_min(1e-300)) - lq)).sum(1)).sum())
    mean_g = -torch.einsum("nk,nkp->np", tbar, J)  # E[g | x] at theta_lam; its spread over x adds to C
    C = torch.einsum("n,nkp,nkl,nlq->pq", w, J, cov_t, J) + torch.einsum("n,np,nq->pq", w, mean_g, mean_g)
    return KDExact(bias, float(torch.trace(C)), float(torch.trace(torch.linalg.pinv(H, hermitian=True) @ C)))


def lambda_star_exact(task: "Task", student: "Student", teacher: Any, nodes: Nodes, *, gamma: float | None = None,
                      batch: int = 1, n: int | None = None) -> float:
    """The lam in [0, 1] minimising `KDExact.neighborhood(gamma, batch)` (or `.finite_n(n)` when n is
    given): E20's best lam without the expansion in the bias (bounded scalar search, xatol 1e-4)."""
    from scipy.optimize import minimize_scalar

    if (gamma is None) == (n is None):
        raise ValueError("give exactly one of gamma (stationary) and n (finite n)")
    f = (lambda e: e.finite_n(n)) if n is not None else (lambda e: e.neighborhood(gamma, batch))  # noqa: E731
    res = minimize_scalar(lambda lam: f(kd_exact(task, student, teacher, lam, nodes)), bounds=(0.0, 1.0),
                          method="bounded", options={"xatol": 1e-4})
    return float(res.x)


def temperature_floor(task: "Task", tau: float, nodes: Nodes) -> Estimate:
    """E22 (b): E_x KL(p || softmax(log p / tau)) (nats) on the nodes (exact points only)."""
    tau = validation.positive("tau", tau)
    if not nodes.exact:
        raise ValueError("temperature_floor needs exact points (KL is not linear in x)")
    logp = np.log(np.maximum(nodes.p, 1e-300))
    z = logp / tau
    logq = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    kl = np.sum(nodes.p * (logp - logq), axis=1)
    method = f"E22 (b) on {nodes.method}"
    if nodes.iid:
        return estimate(kl, method)
    return Estimate(float(nodes.mean(kl)), 0.0, method)


__all__ = ["KDExact", "KDNoise", "adam_neighborhood", "kd_exact", "lambda_star_exact", "adam_preconditioner", "kd_noise", "kd_rows", "preconditioned_covariance",
           "preconditioned_neighborhood", "temperature_floor"]
