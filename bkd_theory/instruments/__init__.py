"""Measurements taken during SGD, behind one protocol (see `base`); each registers itself.

Quantities (per chain, `[R]`): dist2, excess_risk (optimality); grad_second_moment,
grad_cov_trace, sigma2_at_optimum (gradients); val_loss (neighborhood; loss-curve noise is computed
after the run by `loss_noise`); accuracy, bayes_agreement, ece (calibration). Shared inputs
(`needs`): the evaluation log-probabilities, per-chain probes and their gradient moments.
"""
from __future__ import annotations

from synthetic import validation

from .base import (INSTRUMENTS, EvalSet, Every, Instrument, LogSpaced, PerPoint, Scheduled, StreamBank, mask_inactive,
                   per_point, register_instrument)
from .context import ATTRIBUTES, NEEDS, StepContext, check_needs, register_need
from .calibration import Calibration, expected_calibration_error
from .gradients import GradientNoise, GradientNoiseAtOptimum
from .moments import GradientMoments, gradient_moments, probe_draw, sigma2_at_optimum
from .neighborhood import ValidationLoss, loss_noise
from .optimality import Distance, ExcessRisk

__all__ = [
    "ATTRIBUTES", "Calibration", "Distance", "EvalSet", "Every", "ExcessRisk", "GradientMoments", "GradientNoise",
    "GradientNoiseAtOptimum", "INSTRUMENTS", "Instrument", "LogSpaced", "NEEDS", "PerPoint", "Scheduled", "StepContext",
    "StreamBank", "ValidationLoss", "check_needs", "default_instruments", "expected_calibration_error",
    "gradient_moments", "loss_noise", "mask_inactive", "per_point", "probe_draw", "register_instrument", "register_need",
    "sigma2_at_optimum",
]


def default_instruments(eval_every: int, steps: int, *, probe_size: int = 128, gradients: bool = True,
                        bins: int = 15) -> list[Instrument]:
    """Return the standard set, all observing every `eval_every` steps plus step 0 and `steps`.

    The set: Distance (dist2), ExcessRisk (excess_risk), ValidationLoss (val_loss), Calibration
    (accuracy, bayes_agreement, ece) and, when `gradients` is True, GradientNoise
    (grad_second_moment, grad_cov_trace) and GradientNoiseAtOptimum (sigma2_at_optimum), both on
    the same `probe_size` fresh probe points per chain and observation.

    Args:
        eval_every: observation period in steps (>= 1).
        steps: the last step of the run (always observed).
        probe_size: probe points per chain for the gradient instruments (>= 2).
        gradients: include the two gradient-noise instruments.
        bins: ECE bins.
    """
    when = Every(validation.positive_int("eval_every", eval_every), last=validation.positive_int("steps", steps))
    out: list[Instrument] = [Distance(when), ExcessRisk(when), ValidationLoss(when), Calibration(when, bins=bins)]
    if gradients:
        out += [GradientNoise(when, probe_size=probe_size), GradientNoiseAtOptimum(when, probe_size=probe_size)]
    return out
