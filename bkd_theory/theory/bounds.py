"""The convergence bounds T1-T4 (DESIGN 2.7, E13-E16) with their admissible step sizes.

SGD theta_{k+1} = theta_k - gamma g_k with E g_k = grad F(theta_k). Constants (DESIGN 2.6): mu
(strong quasi-convexity for T1/T3, PL for T2/T4), L (smoothness of F), calL (expected smoothness,
E12), sigma^2 = sigma_T^2 (E4).

    theorem  targets            step sizes                bound
    T1       bcp (interp.)      gamma <= 1/calL           E||theta_k - theta*||^2 <= (1 - gamma mu)^k d0          (E13)
    T2       bcp (interp.)      gamma <= mu/(L calL)      E[F_k - F*] <= (1 - gamma mu)^k e0                      (E14)
    T3       noisy / onehot     gamma <= 1/(2 calL)       ... <= (1 - gamma mu)^k d0 + 2 gamma sigma^2 / mu       (E15)
    T4       noisy / onehot     gamma <= mu/(2 L calL)    ... <= (1 - gamma mu)^k e0 + L gamma sigma^2 / mu       (E16)

Each bound refuses (ValueError naming gamma and the admissible range) outside its step-size range.
`form="theorem"` gives E13-E16 as stated; `form="recursion"` unrolls the one-step recursion that
`bkd_theory.theory.symbolic` derives, which is never looser: the same for T1, the finite-k sum for
T3, and the sharper contraction 1 - 2 gamma mu + L gamma^2 calL (T2) or
1 - 2 gamma mu + 2 L gamma^2 calL (T4) instead of 1 - gamma mu.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthetic import validation

THEOREMS = ("T1", "T2", "T3", "T4")
_QUANTITY = {"T1": "dist2", "T2": "excess_risk", "T3": "dist2", "T4": "excess_risk"}
_RANGE_TEXT = {"T1": "1/calL", "T2": "mu/(L calL)", "T3": "1/(2 calL)", "T4": "mu/(2 L calL)"}
_REL_EDGE = 1e-12  # gamma exactly at the edge, up to rounding, is admissible


def gamma_max(theorem: str, *, calL: float, mu: float | None = None, L: float | None = None) -> float:
    """Largest admissible step size of `theorem` (T1: 1/calL, T2: mu/(L calL), T3: 1/(2 calL),
    T4: mu/(2 L calL))."""
    theorem = validation.one_of("theorem", str(theorem).upper(), THEOREMS)
    calL = validation.positive("calL", calL)
    if theorem == "T1":
        return 1.0 / calL
    if theorem == "T3":
        return 1.0 / (2.0 * calL)
    mu, L = validation.positive("mu", mu), validation.positive("L", L)
    return mu / (L * calL) if theorem == "T2" else mu / (2.0 * L * calL)


def check_step(theorem: str, gamma: float, *, calL: float, mu: float | None = None, L: float | None = None) -> float:
    """Return gamma if it is admissible for `theorem`; raise ValueError naming the range otherwise."""
    gamma = validation.positive("gamma", gamma)
    gm = gamma_max(theorem, calL=calL, mu=mu, L=L)
    if gamma > gm * (1 + _REL_EDGE):
        raise ValueError(f"gamma={gamma:.6g} is outside the admissible range of {theorem.upper()}: "
                         f"gamma must be in (0, {_RANGE_TEXT[theorem.upper()]}] = (0, {gm:.6g}]")
    return gamma


@dataclass(frozen=True)
class Bound:
    """A bound curve over iterations k.

    Attributes:
        theorem: "T1".."T4". quantity: "dist2" (E||theta_k - theta*||^2) or "excess_risk" (E[F - F*]).
        k: iterations `[M]`. values: the bound at each k `[M]`.
        rate: per-step contraction factor. neighborhood: the k -> inf limit.
        gamma, gamma_max: step size and the largest admissible one. kappa: L / mu when known.
        form: "theorem" (E13-E16 as stated) or "recursion" (the unrolled one-step recursion).
    """

    theorem: str
    quantity: str
    k: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)
    rate: float
    neighborhood: float
    gamma: float
    gamma_max: float
    kappa: float | None
    form: str

    def to_dict(self) -> dict[str, Any]:
        return {"theorem": self.theorem, "quantity": self.quantity, "rate": self.rate, "neighborhood": self.neighborhood,
                "gamma": self.gamma, "gamma_max": self.gamma_max, "kappa": self.kappa, "form": self.form,
                "k": self.k.tolist(), "values": self.values.tolist()}


def _iterations(k: Any) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(k))
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or np.any(arr < 0):
        raise ValueError(f"k must be non-negative integer iterations (1-D), got {k!r}")
    return arr.astype(np.int64)


def _curve(theorem: str, k: Any, start: float, rate: float, add: float, gamma: float, gm: float,
           kappa: float | None, form: str) -> Bound:
    k = _iterations(k)
    rk = rate ** k.astype(np.float64)
    if form == "theorem" or add == 0.0:
        neigh = add / (1.0 - rate) if add else 0.0
        vals = rk * start + neigh
    else:
        neigh = add / (1.0 - rate)
        vals = rk * start + neigh * (1.0 - rk)
    return Bound(theorem, _QUANTITY[theorem], k, vals, float(rate), float(neigh), gamma, gm, kappa, form)


def _form(form: str) -> str:
    return validation.one_of("form", form, ("theorem", "recursion"))


def bound_t1(gamma: float, *, mu: float, calL: float, dist0: float, k: Any, form: str = "theorem") -> Bound:
    """T1 (E13): E||theta_k - theta*||^2 <= (1 - gamma mu)^k ||theta_0 - theta*||^2.

    Assumptions: bcp targets (interpolation: every per-sample gradient vanishes at theta*), F
    mu-strongly quasi-convex, expected smoothness calL, 0 < gamma <= 1/calL.
    """
    mu, d0 = validation.positive("mu", mu), validation.nonnegative("dist0", dist0)
    gamma = check_step("T1", gamma, calL=calL)
    return _curve("T1", k, d0, 1.0 - gamma * mu, 0.0, gamma, gamma_max("T1", calL=calL), None, _form(form))


def bound_t2(gamma: float, *, mu: float, L: float, calL: float, gap0: float, k: Any, form: str = "theorem") -> Bound:
    """T2 (E14): E[F(theta_k) - F*] <= (1 - gamma mu)^k (F(theta_0) - F*).

    Assumptions: bcp targets (interpolation), F L-smooth and mu-PL, expected smoothness calL,
    0 < gamma <= mu / (L calL). `form="recursion"`: rate 1 - 2 gamma mu + L gamma^2 calL.
    """
    mu, L, e0 = validation.positive("mu", mu), validation.positive("L", L), validation.nonnegative("gap0", gap0)
    gamma = check_step("T2", gamma, calL=calL, mu=mu, L=L)
    rate = 1.0 - gamma * mu if _form(form) == "theorem" else 1.0 - 2 * gamma * mu + L * gamma**2 * calL
    return _curve("T2", k, e0, rate, 0.0, gamma, gamma_max("T2", calL=calL, mu=mu, L=L), L / mu, form)


def bound_t3(gamma: float, *, mu: float, calL: float, sigma2: float, dist0: float, k: Any, form: str = "theorem") -> Bound:
    """T3 (E15): E||theta_k - theta*||^2 <= (1 - gamma mu)^k ||theta_0 - theta*||^2 + 2 gamma sigma^2 / mu.

    Assumptions: any unbiased teacher (sigma^2 = sigma_T^2 > 0), F mu-strongly quasi-convex,
    expected smoothness calL, 0 < gamma <= 1/(2 calL). `form="recursion"`: the finite-k sum
    2 gamma^2 sigma^2 (1 - (1 - gamma mu)^k) / (gamma mu).
    """
    mu, d0 = validation.positive("mu", mu), validation.nonnegative("dist0", dist0)
    s2 = validation.nonnegative("sigma2", sigma2)
    gamma = check_step("T3", gamma, calL=calL)
    return _curve("T3", k, d0, 1.0 - gamma * mu, 2 * gamma**2 * s2, gamma, gamma_max("T3", calL=calL), None, _form(form))


def bound_t4(gamma: float, *, mu: float, L: float, calL: float, sigma2: float, gap0: float, k: Any,
             form: str = "theorem") -> Bound:
    """T4 (E16): E[F(theta_k) - F*] <= (1 - gamma mu)^k (F(theta_0) - F*) + L gamma sigma^2 / mu.

    Assumptions: any unbiased teacher, F L-smooth and mu-PL, expected smoothness calL,
    0 < gamma <= mu / (2 L calL). `form="recursion"`: rate 1 - 2 gamma mu + 2 L gamma^2 calL and
    neighborhood L gamma sigma^2 / (2 (mu - L gamma calL)), at most E16's.
    """
    mu, L, e0 = validation.positive("mu", mu), validation.positive("L", L), validation.nonnegative("gap0", gap0)
    s2 = validation.nonnegative("sigma2", sigma2)
    gamma = check_step("T4", gamma, calL=calL, mu=mu, L=L)
    rate = 1.0 - gamma * mu if _form(form) == "theorem" else 1.0 - 2 * gamma * mu + 2 * L * gamma**2 * calL
    return _curve("T4", k, e0, rate, L * gamma**2 * s2, gamma, gamma_max("T4", calL=calL, mu=mu, L=L), L / mu, form)


def neighborhood(theorem: str, gamma: float, *, mu: float, calL: float, sigma2: float, L: float | None = None) -> float:
    """The k -> inf value of T3 (2 gamma sigma^2 / mu) or T4 (L gamma sigma^2 / mu); refuses outside the range."""
    theorem = validation.one_of("theorem", str(theorem).upper(), ("T3", "T4"))
    if theorem == "T3":
        return bound_t3(gamma, mu=mu, calL=calL, sigma2=sigma2, dist0=0.0, k=[0]).neighborhood
    return bound_t4(gamma, mu=mu, L=L, calL=calL, sigma2=sigma2, gap0=0.0, k=[0]).neighborhood
