"""The loss of DESIGN (E1) and the one reduction convention of the toolkit.

Convention (pinned here, tested in tests/test_losses.py):
- `cross_entropy` returns the **per-sample** loss l(theta; x, t) = -sum_k t_k log q_k, one value per
  sample; it is linear in t and is never averaged over classes.
- A minibatch objective is the **mean** over its b samples, so a minibatch gradient is
  (1/b) sum_i grad l_i and its covariance is C_T / b.
- sigma^2 (E4) is the second moment of a **single-sample** gradient.
"""
from __future__ import annotations

import torch


def cross_entropy(t: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Return the per-sample loss (E1), shape `t.shape[:-1]` (nats).

    Args:
        t: targets `[..., K]`; any real vectors (additive noise may leave the simplex).
        log_q: student log-probabilities `[..., K]`.
    """
    if t.shape != log_q.shape:
        raise ValueError(f"t and log_q must have the same shape, got {tuple(t.shape)} and {tuple(log_q.shape)}")
    return -(t * log_q).sum(dim=-1)


def batch_loss(t: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Return the minibatch objective: the mean of (E1) over the sample axis -2 of `[..., B, K]`."""
    return cross_entropy(t, log_q).mean(dim=-1)


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Return KL(p || q) per row `[...]` (nats); rows with p_k = 0 contribute 0 for that k.

    F(theta) - F* = E_x KL(p(x) || q_theta(x)) for any unbiased teacher (DESIGN 2.3).
    """
    p = log_p.exp()
    terms = p * (log_p - log_q)
    if not bool((p > 0).all()):  # one pass fewer when no class has probability 0 (the usual case)
        terms = torch.where(p > 0, terms, torch.zeros_like(p))
    return terms.sum(dim=-1)
