"""Measurements taken during SGD, behind one protocol (see `base`).

Quantities (per chain, `[R]`): dist2, excess_risk (optimality); grad_second_moment,
grad_cov_trace, sigma2_at_optimum (gradients); val_loss (neighborhood; loss-curve noise is computed
after the run by `loss_noise`); accuracy, bayes_agreement, ece (calibration).
"""
from __future__ import annotations

from .base import EvalSet, Every, Instrument, LogSpaced, Scheduled, StepContext, mask_inactive
from .calibration import Calibration, expected_calibration_error
from .gradients import (
    GradientMoments,
    GradientNoise,
    GradientNoiseAtOptimum,
    gradient_moments,
    probe_draw,
    sigma2_at_optimum,
)
from .neighborhood import (
    ValidationLoss,
    WindowStats,
    loss_noise,
    stationary_window_stats,
    trailing_window,
    window_std,
)
from .optimality import Distance, ExcessRisk

__all__ = [
    "Calibration",
    "Distance",
    "EvalSet",
    "Every",
    "ExcessRisk",
    "GradientMoments",
    "GradientNoise",
    "GradientNoiseAtOptimum",
    "Instrument",
    "LogSpaced",
    "Scheduled",
    "StepContext",
    "ValidationLoss",
    "WindowStats",
    "default_instruments",
    "expected_calibration_error",
    "gradient_moments",
    "loss_noise",
    "mask_inactive",
    "probe_draw",
    "sigma2_at_optimum",
    "stationary_window_stats",
    "trailing_window",
    "window_std",
]


def default_instruments(
    eval_every: int,
    steps: int,
    *,
    probe_size: int = 128,
    gradients: bool = True,
    bins: int = 15,
) -> list[Instrument]:
    """Return the standard set, all observing every `eval_every` steps plus step 0 and `steps`.

    The set: Distance (dist2), ExcessRisk (excess_risk), ValidationLoss (val_loss), Calibration
    (accuracy, bayes_agreement, ece) and, when `gradients` is True, GradientNoise
    (grad_second_moment, grad_cov_trace) and GradientNoiseAtOptimum (sigma2_at_optimum), each on
    `probe_size` fresh probe points per chain and observation.

    Args:
        eval_every: observation period in steps (>= 1).
        steps: the last step of the run (always observed).
        probe_size: probe points per chain for the gradient instruments (>= 2).
        gradients: include the two gradient-noise instruments (they cost ~2 probe batches of
            per-sample gradients per observation).
        bins: ECE bins.
    """
    from synthetic import validation

    when = Every(validation.positive_int("eval_every", eval_every), last=validation.positive_int("steps", steps))
    out: list[Instrument] = [Distance(when), ExcessRisk(when), ValidationLoss(when), Calibration(when, bins=bins)]
    if gradients:
        out += [GradientNoise(when, probe_size=probe_size), GradientNoiseAtOptimum(when, probe_size=probe_size)]
    return out
