"""The convergence bounds T1-T4 (DESIGN 2.7, E13-E16) as objects, with their admissible step sizes.

SGD theta_{k+1} = theta_k - gamma g_k with E g_k = grad F(theta_k). Constants (DESIGN 2.6): mu
(strong quasi-convexity for T1/T3, PL for T2/T4), L (smoothness of F), calL (expected smoothness,
E12), sigma^2 = sigma_T^2 (E4).

    theorem  targets            step sizes                bound
    T1       bcp (interp.)      gamma <= 1/calL           E||theta_k - theta*||^2 <= (1 - gamma mu)^k d0          (E13)
    T2       bcp (interp.)      gamma <= mu/(L calL)      E[F_k - F*] <= (1 - gamma mu)^k e0                      (E14)
    T3       noisy / onehot     gamma <= 1/(2 calL)       ... <= (1 - gamma mu)^k d0 + 2 gamma sigma^2 / mu       (E15)
    T4       noisy / onehot     gamma <= mu/(2 L calL)    ... <= (1 - gamma mu)^k e0 + L gamma sigma^2 / mu       (E16)

Each theorem is a `Theorem` in `THEOREMS`, holding its step-size range, rates and additive term as
functions of the constants; `Theorem.curve` refuses (ValueError naming gamma and the admissible
range) outside the range. `form="theorem"` gives E13-E16 as stated; `form="recursion"` unrolls the
one-step recursion that `bkd_theory.theory.symbolic` derives, which is never looser: the same for
T1, the finite-k sum for T3, and the sharper contraction 1 - 2 gamma mu + L gamma^2 calL (T2) or
1 - 2 gamma mu + 2 L gamma^2 calL (T4) instead of 1 - gamma mu.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from synthetic import validation

_REL_EDGE = 1e-12  # gamma exactly at the edge, up to rounding, is admissible


@dataclass(frozen=True)
class Constants:
    """The constants a bound depends on: mu, L, calL and sigma^2 (unused ones may be None)."""

    mu: float
    calL: float
    L: float | None = None
    sigma2: float = 0.0


@dataclass(frozen=True)
class Bound:
    """A bound curve over iterations k.

    Attributes:
        theorem: "T1".."T4". quantity: "dist2" (E||theta_k - theta*||^2) or "excess_risk" (E[F - F*]).
        k: iterations `[M]`. values: the bound at each k `[M]`.
        rate: per-step contraction factor. neighborhood: the k -> inf limit.
        gamma, gamma_max: step size and the largest admissible one. kappa: L / mu when known.
        form: "theorem" (E13-E16 as stated) or "recursion" (the unrolled one-step recursion).
        contraction: rate^k at the last k (the bound is vacuous where it stays ~1).
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

    @property
    def contraction(self) -> float:
        return float(self.rate ** float(self.k[-1]))

    def to_dict(self) -> dict[str, Any]:
        return {"theorem": self.theorem, "quantity": self.quantity, "rate": self.rate, "neighborhood": self.neighborhood,
                "gamma": self.gamma, "gamma_max": self.gamma_max, "kappa": self.kappa, "form": self.form,
                "k": self.k.tolist(), "values": self.values.tolist()}


def _iterations(k: Any) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(k))
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or np.any(arr < 0):
        raise ValueError(f"k must be non-negative integer iterations (1-D), got {k!r}")
    return arr.astype(np.int64)


@dataclass(frozen=True)
class Theorem:
    """One of T1-T4: its quantity, assumptions, step-size range and one-step recursion.

    Attributes:
        name, tag: "T1", "E13". quantity: what it bounds. interpolation: it needs bcp targets.
        needs_L: the range and rate use L (T2, T4). range_text: the admissible range as written.
        gamma_max: c -> the largest admissible gamma. sharp_rate: (gamma, c) -> the recursion's rate.
        additive: (gamma, c) -> the constant added per step (0 under interpolation).
        statement: the bound as a sentence.
    """

    name: str
    tag: str
    quantity: str
    interpolation: bool
    needs_L: bool
    range_text: str
    gamma_max: Callable[[Constants], float] = field(repr=False)
    sharp_rate: Callable[[float, Constants], float] = field(repr=False)
    additive: Callable[[float, Constants], float] = field(repr=False)
    statement: str = ""

    def check_step(self, gamma: float, c: Constants) -> float:
        """Return gamma if it is admissible; raise ValueError naming the range otherwise."""
        gamma = validation.positive("gamma", gamma)
        gm = self.admissible(c)
        if gamma > gm * (1 + _REL_EDGE):
            raise ValueError(f"gamma={gamma:.6g} is outside the admissible range of {self.name}: "
                             f"gamma must be in (0, {self.range_text}] = (0, {gm:.6g}]")
        return gamma

    def admissible(self, c: Constants) -> float:
        """The largest admissible step size for the constants `c`."""
        validation.positive("calL", c.calL)
        if self.needs_L:
            validation.positive("mu", c.mu)
            validation.positive("L", c.L)
        return float(self.gamma_max(c))

    def curve(self, gamma: float, c: Constants, start: float, k: Any, form: str = "theorem") -> Bound:
        """The bound at iterations k from `start` (d0 = ||theta_0 - theta*||^2 or e0 = F(theta_0) - F*)."""
        form = validation.one_of("form", form, ("theorem", "recursion"))
        validation.positive("mu", c.mu)
        validation.nonnegative("dist0" if self.quantity == "dist2" else "gap0", start)
        validation.nonnegative("sigma2", c.sigma2)
        gamma = self.check_step(gamma, c)
        k = _iterations(k)
        rate = 1.0 - gamma * c.mu if form == "theorem" else float(self.sharp_rate(gamma, c))
        add = float(self.additive(gamma, c))
        rk = rate ** k.astype(np.float64)
        if form == "theorem" or add == 0.0:  # E13-E16 as stated: rate^k x0 + add / (gamma mu)
            neigh = add / (gamma * c.mu) if add else 0.0
            vals = rk * start + neigh
        else:
            neigh = add / (1.0 - rate)
            vals = rk * start + neigh * (1.0 - rk)
        kappa = c.L / c.mu if c.L is not None else None
        return Bound(self.name, self.quantity, k, vals, float(rate), float(neigh), gamma, self.admissible(c), kappa, form)

    def neighborhood(self, gamma: float, c: Constants) -> float:
        """The k -> inf value of the stated bound (0 for T1/T2); refuses outside the range."""
        return self.curve(gamma, c, 0.0, [0]).neighborhood


THEOREMS: dict[str, Theorem] = {t.name: t for t in (
    Theorem("T1", "E13", "dist2", True, False, "1/calL", lambda c: 1.0 / c.calL,
            lambda g, c: 1.0 - g * c.mu, lambda g, c: 0.0, "E||theta_k - theta*||^2 <= (1 - gamma mu)^k d0"),
    Theorem("T2", "E14", "excess_risk", True, True, "mu/(L calL)", lambda c: c.mu / (c.L * c.calL),
            lambda g, c: 1.0 - 2 * g * c.mu + c.L * g**2 * c.calL, lambda g, c: 0.0,
            "E[F_k - F*] <= (1 - gamma mu)^k e0"),
    Theorem("T3", "E15", "dist2", False, False, "1/(2 calL)", lambda c: 1.0 / (2.0 * c.calL),
            lambda g, c: 1.0 - g * c.mu, lambda g, c: 2 * g**2 * c.sigma2,
            "E||theta_k - theta*||^2 <= (1 - gamma mu)^k d0 + 2 gamma sigma^2 / mu"),
    Theorem("T4", "E16", "excess_risk", False, True, "mu/(2 L calL)", lambda c: c.mu / (2.0 * c.L * c.calL),
            lambda g, c: 1.0 - 2 * g * c.mu + 2 * c.L * g**2 * c.calL, lambda g, c: c.L * g**2 * c.sigma2,
            "E[F_k - F*] <= (1 - gamma mu)^k e0 + L gamma sigma^2 / mu"),
)}


def theorem(name: str) -> Theorem:
    """The theorem `name` ("T1".."T4"); ValueError naming the choices."""
    return THEOREMS[validation.one_of("theorem", str(name).upper(), tuple(THEOREMS))]
