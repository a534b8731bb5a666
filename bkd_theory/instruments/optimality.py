"""Distance to the optimum and excess risk (DESIGN 2.3, E13-E17').

Both return one value per chain `[R]`; diverged chains get NaN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..losses import kl_divergence
from .base import PerPoint, Scheduled, mask_inactive, per_point, register_instrument
from .context import StepContext


@register_instrument("dist2")
@dataclass(frozen=True)
class Distance(Scheduled):
    """Squared distance to the population minimiser, `dist2` = ||theta_k - theta*||^2 (E13, E15, E17').

    Units: squared parameter norm, in the student's own parameter space (pinned gauge: free
    coordinates only; full gauge and MLP output layer: less the gauge direction that no gradient
    moves, `Student.identifiable`). When the student is not realizable (`ctx.theta_star is None`) the value is
    NaN for every chain, so the quantity is always present in the record.
    """

    name: ClassVar[str] = "dist2"
    needs: ClassVar[frozenset[str]] = frozenset({"theta", "theta_star", "active"})

    def observe(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Return {"dist2": `[R]`}."""
        if ctx.theta_star is None:
            return {"dist2": torch.full((ctx.theta.shape[0],), float("nan"), dtype=ctx.theta.dtype, device=ctx.theta.device)}
        diff = ctx.student.identifiable(ctx.theta - ctx.theta_star.to(ctx.theta))
        return {"dist2": mask_inactive((diff * diff).sum(dim=-1), ctx.active)}


@register_instrument("excess_risk")
@dataclass(frozen=True)
class ExcessRisk(Scheduled):
    """Excess risk `excess_risk` = F(theta_k) - F* = mean over the eval set of KL(p(x) || q_theta(x)).

    DESIGN 2.3 (Prop. 1): for every unbiased teacher F - F* = E_x KL(p || q_theta) >= 0, so this is
    measured directly from the exact log p of the task, with no difference of two noisy risks. The
    expectation over x is replaced by the mean over the fixed evaluation sample of N points (the same
    points for every chain and step). Units: nats. For a biased teacher it is still the excess of
    the *true* risk, not of the training objective. The per-point values (mean over chains) are
    returned too, for the evaluation sample's error (`PerPoint`).
    """

    name: ClassVar[str] = "excess_risk"
    needs: ClassVar[frozenset[str]] = frozenset({"eval_log_q"})

    def observe(self, ctx: StepContext) -> dict[str, PerPoint]:
        """Return {"excess_risk": `PerPoint` (`[R]` per chain, `[N]` per evaluation point)}."""
        log_q = ctx.eval_log_q  # [R, N, K]
        log_p = ctx.eval_set.log_p.to(log_q)  # [N, K], broadcast over chains (p = exp(log_p) once)
        return {"excess_risk": per_point(kl_divergence(log_p, log_q), ctx.active)}
