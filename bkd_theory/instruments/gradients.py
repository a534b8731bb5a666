"""Per-sample gradient noise at theta_k and at theta* (DESIGN 2.5, E4; STYLE 1).

The gradient noise of SGD is the law of a single-sample gradient g = grad l(theta; x, t) (E1) with
(x, y) drawn from the task and t from the teacher, at fixed theta. The instruments here estimate,
per chain, from a probe batch of m fresh points:

    grad_second_moment = E ||g||^2                          (units: squared gradient norm)
    grad_cov_trace     = tr Cov(g) = E ||g||^2 - ||E g||^2
    sigma2_at_optimum  = E ||grad l(theta*; x, t)||^2       (E4: sigma_T^2)

Gradients are in the student's own parameter space (pinned gauge: free coordinates only; the closed
forms of DESIGN 2.5 are for the full gauge). Reduction convention: `bkd_theory.losses` (sigma^2 is
the single-sample second moment; a batch of b has covariance C_T / b).

Probes: every chain gets its own independent m points from its own stream (the shared need
"probe:m"), so chains stay independent samples and the summary layer's SE across chains is valid
(DESIGN 2.9). Both instruments read the shared needs "grad_moments:m" / "grad_moments_at_optimum:m":
the probe and each pass of per-sample gradients are computed once per step, on the same points
(common random numbers). `sigma2_at_optimum` is identical in law for all chains; it is measured per
chain on independent probes so that its time average over the stationary window, with the SE
across chains, is an ordinary estimate with an honest error bar, and the instrument keeps no state.
The standalone `sigma2_at_optimum` function gives one estimate with its SE from the probe samples.

The kernels (`GradientMoments`, `gradient_moments`, `sigma2_at_optimum`) live in `moments`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from synthetic import validation

from .base import Scheduled, mask_inactive, register_instrument
from .context import StepContext, nan_values

@register_instrument("grad_noise")
@dataclass(frozen=True)
class GradientNoise(Scheduled):
    """`grad_second_moment` = E||g_i||^2 and `grad_cov_trace` = tr Cov(g) at theta_k, per chain.

    g_i = grad l(theta_k; x_i, t_i) (E1) on `probe_size` fresh points per chain with targets from
    the run's teacher (the need "grad_moments:<probe_size>"). tr Cov uses the unbiased (m - 1)
    normalisation. Units: squared gradient norm (per sample; a batch of b has covariance trace
    tr Cov / b).

    Attributes:
        when: schedule.
        probe_size: m, probe points per chain and observation (>= 2).
    """

    probe_size: int = 256
    name: ClassVar[str] = "grad_noise"

    def __post_init__(self) -> None:
        validation.positive_int("probe_size", self.probe_size, minimum=2)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"active", f"grad_moments:{self.probe_size}"})

    def observe(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Return {"grad_second_moment": `[R]`, "grad_cov_trace": `[R]`}."""
        mom = ctx.need(f"grad_moments:{self.probe_size}")
        return {
            "grad_second_moment": mask_inactive(mom.second_moment, ctx.active),
            "grad_cov_trace": mask_inactive(mom.cov_trace, ctx.active),
        }


@register_instrument("sigma2_at_optimum")
@dataclass(frozen=True)
class GradientNoiseAtOptimum(Scheduled):
    """`sigma2_at_optimum` = E ||grad l(theta*; x, t)||^2 (E4), measured per chain on its own probes.

    The value is the same in law for every chain and every step (theta* is fixed), so its time
    average over any window and the SE across chains estimate sigma_T^2 with an honest error bar.
    With bcp targets and a realizable student it is 0 (Prop. 2, interpolation). NaN when the
    student is not realizable (`theta_star is None`). Units: squared gradient norm.

    Attributes:
        when: schedule.
        probe_size: m, probe points per chain and observation (>= 1).
    """

    probe_size: int = 256
    name: ClassVar[str] = "sigma2_at_optimum"

    def __post_init__(self) -> None:
        validation.positive_int("probe_size", self.probe_size)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"theta_star", f"grad_moments_at_optimum:{self.probe_size}"})

    def observe(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Return {"sigma2_at_optimum": `[R]`}."""
        mom = ctx.need(f"grad_moments_at_optimum:{self.probe_size}")
        return {"sigma2_at_optimum": nan_values(ctx) if mom is None else mom.second_moment}
