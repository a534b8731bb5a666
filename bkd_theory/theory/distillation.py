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

E22 (b). A teacher-only temperature tau gives targets softmax(log p / tau), realizable by the linear
student of a shared-covariance Gaussian mixture (at theta* / tau), so SGD converges to a floor
E_x KL(p || softmax(log p / tau)) with no neighborhood.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from synthetic import validation
from synthetic.base import Estimate

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
        return Estimate(float(kl.mean()), float(kl.std(ddof=1) / math.sqrt(len(kl))), method)
    return Estimate(float(nodes.mean(kl)), 0.0, method)


__all__ = ["KDNoise", "adam_neighborhood", "kd_noise", "preconditioned_neighborhood", "temperature_floor"]
