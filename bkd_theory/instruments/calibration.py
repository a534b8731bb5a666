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

from .base import Scheduled, mask_inactive, register_instrument
from .context import StepContext

DEFAULT_BINS = 15


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

    def observe(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Return {"accuracy": `[R]`, "bayes_agreement": `[R]`, "ece": `[R]`}."""
        log_q = ctx.eval_log_q  # [R, N, K]
        q = log_q.exp()
        pred = log_q.argmax(dim=-1)  # [R, N]
        y = ctx.eval_set.y.to(pred.device)
        bayes = ctx.eval_set.p.argmax(dim=-1).to(pred.device)
        acc = (pred == y).to(log_q.dtype).mean(dim=-1)
        agree = (pred == bayes).to(log_q.dtype).mean(dim=-1)
        ece = expected_calibration_error(q, ctx.eval_set.p, self.bins)
        return {
            "accuracy": mask_inactive(acc, ctx.active),
            "bayes_agreement": mask_inactive(agree, ctx.active),
            "ece": mask_inactive(ece, ctx.active),
        }
