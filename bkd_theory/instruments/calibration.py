"""Accuracy, agreement with the Bayes classifier, and calibration error against the true p.

All three are measured on the fixed evaluation sample, per chain `[R]`, and are fractions in [0, 1].
ECE is measured against the **true** BCP p, not against sampled labels (DESIGN 4): the label-based
ECE mixes the student's miscalibration with the label noise of a finite sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from synthetic import validation

from .base import PerPoint, Scheduled, per_point, register_instrument
from .context import StepContext

DEFAULT_BINS = 15


def calibration_terms(q: torch.Tensor, p: torch.Tensor, bins: int = DEFAULT_BINS) -> torch.Tensor:
    """Per-point terms of the ECE against p `[..., N]`: s_b(x) (c(x) - p_k^(x)), s_b the sign of its bin's
    sum, so that their mean over the points is the ECE exactly (and, with the signs held fixed,
    linear in the points: the basis of the evaluation-sample error)."""
    bins = validation.positive_int("bins", bins)
    conf, pred = q.max(dim=-1)
    gap = conf - p.to(q).expand_as(q).gather(-1, pred.unsqueeze(-1)).squeeze(-1)
    idx = (conf * bins).floor().long().clamp_(0, bins - 1)
    sums = q.new_zeros(*conf.shape[:-1], bins).scatter_add_(-1, idx, gap)
    return torch.sign(sums).gather(-1, idx) * gap


def expected_calibration_error(q: torch.Tensor, p: torch.Tensor, bins: int = DEFAULT_BINS) -> torch.Tensor:
    """ECE of predictive probabilities `q` against the true BCPs `p`.

    With confidence c(x) = max_k q_k(x) and predicted class k^(x) = argmax_k q_k(x), points are put in
    `bins` equal-width confidence bins on [0, 1] (c = 1 goes to the last bin) and

        ECE = sum_b (n_b / N) |mean_b c - mean_b p_{k^}(x)|  =  (1/N) sum_b |sum_{x in b} (c - p_k^)|,

    i.e. the label-based ECE with the empirical accuracy replaced by its exact conditional mean
    p_{k^}(x). For the Bayes predictor (q = p) it is 0 exactly.

    Args:
        q: student probabilities `[..., N, K]`.
        p: true BCPs `[N, K]` or `[..., N, K]`.
        bins: number of bins (>= 1).

    Returns:
        ECE `[...]` (a fraction).
    """
    bins = validation.positive_int("bins", bins)
    conf, pred = q.max(dim=-1)  # [..., N]
    p_pred = p.to(q).expand_as(q).gather(-1, pred.unsqueeze(-1)).squeeze(-1)
    idx = (conf * bins).floor().long().clamp_(0, bins - 1)
    gap = q.new_zeros(*conf.shape[:-1], bins)
    gap.scatter_add_(-1, idx, conf - p_pred)
    return gap.abs().sum(dim=-1) / conf.shape[-1]


@register_instrument("calibration")
@dataclass(frozen=True)
class Calibration(Scheduled):
    """`accuracy`, `bayes_agreement` and `ece` on the evaluation sample, per chain.

    - accuracy: fraction of eval points with argmax q_theta(x) == y (sampled labels); its mean is
      at most the Bayes accuracy E_x max_k p_k(x), reached by q = p.
    - bayes_agreement: fraction with argmax q_theta(x) == argmax p(x) (1 at theta*).
    - ece: `expected_calibration_error(q, p, bins)` against the true p (0 at theta*).

    Attributes:
        when: schedule.
        bins: equal-width confidence bins for the ECE (default 15).
    """

    bins: int = DEFAULT_BINS
    name: ClassVar[str] = "calibration"
    needs: ClassVar[frozenset[str]] = frozenset({"eval_log_q"})

    def __post_init__(self) -> None:
        validation.positive_int("bins", self.bins)

    def observe(self, ctx: StepContext) -> dict[str, PerPoint]:
        """Return {"accuracy", "bayes_agreement", "ece"}, each a `PerPoint` (`[R]` per chain, `[N]` per point)."""
        log_q = ctx.eval_log_q  # [R, N, K]
        pred = log_q.argmax(dim=-1)  # [R, N]
        y = ctx.eval_set.y.to(pred.device)
        bayes = ctx.eval_set.p.argmax(dim=-1).to(pred.device)
        return {
            "accuracy": per_point((pred == y).to(log_q.dtype), ctx.active),
            "bayes_agreement": per_point((pred == bayes).to(log_q.dtype), ctx.active),
            "ece": per_point(calibration_terms(log_q.exp(), ctx.eval_set.p, self.bins), ctx.active),
        }
