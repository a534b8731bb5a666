"""When a chain has diverged: the stated rule the loop applies (DESIGN 2.9; issue 14).

A chain diverges at the first step where any of these holds:

1. **non-finite**: an entry of theta_k is NaN or +-inf;
2. **distance**: ||theta_k - a||^2 > DIST_RATIO * max(||theta_0 - a||^2, DIST_FLOOR), with a = theta*
   when the student is realizable and a = 0 otherwise: the chain is 10^6 times (in distance) further
   from theta* than it started, or than 1 parameter unit when it started at theta*;
3. **excess risk** (where it is measured, i.e. at the steps where an instrument records
   `excess_risk`): F(theta_k) - F* > max(e_0, 0) + log K + EXCESS_MARGIN nats, e_0 its first
   recorded value: the chain is worse than the uniform prediction (whose excess risk is at most
   log K) by 100 nats more than where it started.

The thresholds are deliberately far out: on the triangle preset SGD at gamma = 32 (50 times the
largest convergent step size) stays below both (||theta - theta*||^2 / start <= 1e5, excess risk
<= 60 nats), while gamma = 1e150 crosses both at the first step. A chain that does not cross them
runs exactly as before: the rule only reads theta (one norm per chain and step, in place of the
finiteness check it replaces) and the recorded excess risk.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["DIST_FLOOR", "DIST_RATIO", "EXCESS_MARGIN", "REASONS", "Divergence"]

#: rule 2: squared distance to theta* (or 0) beyond DIST_RATIO times max(its start, DIST_FLOOR param^2)
DIST_RATIO, DIST_FLOOR = 1e12, 1.0
#: rule 3: nats beyond max(e_0, 0) + log K
EXCESS_MARGIN = 100.0
#: the reason recorded per chain ("" for a chain that did not diverge)
REASONS = ("non-finite", "distance", "excess_risk")


@dataclass
class Divergence:
    """The rule for one run of R chains.

    Attributes:
        ref: the point a `[P]` distances are measured from (theta*, or 0).
        limit: per chain, the bound on ||theta_k|| `[R]` that implies rule 2 is not met:
            ||theta|| <= ||a|| + sqrt(DIST_RATIO max(D_0, DIST_FLOOR)) (triangle inequality), so one
            norm per step suffices and a chain within it is never flagged.
        start_dist2: D_0 per chain `[R]`. log_k: log K. excess_limit: rule 3's bound per chain
            `[R]`, set at the first observation of `excess_risk` (None before).
    """

    ref: torch.Tensor
    limit: torch.Tensor
    start_dist2: np.ndarray
    log_k: float
    excess_limit: np.ndarray | None = None

    @classmethod
    def start(cls, theta0: torch.Tensor, theta_star: torch.Tensor | None, num_classes: int) -> "Divergence":
        """The rule for chains starting at `theta0` `[R, P]` (theta_star `[P]` or None)."""
        t0 = theta0.detach().to(torch.float64)
        ref = torch.zeros(t0.shape[1], dtype=torch.float64, device=t0.device) if theta_star is None else \
            theta_star.detach().to(t0).reshape(-1)
        d0 = ((t0 - ref) ** 2).sum(dim=1)
        bound = torch.linalg.vector_norm(ref) + torch.sqrt(DIST_RATIO * torch.clamp(d0, min=DIST_FLOOR))
        bound = torch.clamp(torch.nan_to_num(bound, nan=0.0), max=torch.finfo(theta0.dtype).max)  # an inf norm is flagged
        return cls(ref, bound.to(theta0.dtype), d0.cpu().numpy().copy(), math.log(num_classes))

    def within(self, theta: torch.Tensor) -> torch.Tensor:
        """`[R]` bool: the chain meets neither rule 1 nor rule 2 (NaN and inf norms compare False)."""
        return torch.linalg.vector_norm(theta, dim=1) <= self.limit

    def rows(self, lo: int, hi: int) -> "Divergence":
        """The rule of chains lo:hi alone (a run stacked with others inside one loop)."""
        excess = None if self.excess_limit is None else self.excess_limit[lo:hi].copy()
        return Divergence(self.ref, self.limit[lo:hi], self.start_dist2[lo:hi].copy(), self.log_k, excess)

    @staticmethod
    def reason(theta_row: torch.Tensor) -> str:
        """Which of rules 1-2 a chain outside `within` broke: "non-finite" or "distance"."""
        return "non-finite" if not bool(torch.isfinite(theta_row).all()) else "distance"

    def observed(self, values: Mapping[str, Any]) -> np.ndarray:
        """`[R]` bool: chains whose recorded `excess_risk` breaks rule 3 (all False when not measured)."""
        risk = values.get("excess_risk")
        if risk is None:
            return np.zeros(len(self.start_dist2), dtype=bool)
        risk = np.asarray(risk, dtype=np.float64)
        if self.excess_limit is None:
            self.excess_limit = np.where(np.isfinite(risk), np.maximum(risk, 0.0), 0.0) + self.log_k + EXCESS_MARGIN
        with np.errstate(invalid="ignore"):
            return risk > self.excess_limit

    def describe(self) -> dict[str, Any]:
        """The rule as plain data, for the run's record."""
        return {"rules": ["non-finite theta",
                          f"||theta - a||^2 > {DIST_RATIO:g} * max(||theta_0 - a||^2, {DIST_FLOOR:g}), a = theta* (else 0)",
                          f"excess_risk > max(e_0, 0) + log K + {EXCESS_MARGIN:g} nats where measured"],
                "dist_ratio": DIST_RATIO, "dist_floor": DIST_FLOOR, "excess_margin": EXCESS_MARGIN,
                "log_K": self.log_k}
