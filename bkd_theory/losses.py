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

#: from this many rows on, `log_softmax` works class-major (below it the two transposes cost more)
CLASS_MAJOR_ROWS = 256


def log_softmax(z: torch.Tensor) -> torch.Tensor:
    """log softmax over the classes (last dim) of logits `[..., K]`: the students' log q.

    torch's kernel is slow when the class dim is short and innermost (K = 5: ~15 ns per element on
    CPU); with at least `CLASS_MAJOR_ROWS` rows the same reduction runs on the class-major layout
    `[K, rows]`, vectorised over rows: 3-20x faster, and equal bit for bit to
    `torch.log_softmax(z, -1)` for K <= 8 on CPU in float32 and float64 (tests/test_losses.py); for
    larger K it agrees to rounding.
    """
    K = z.shape[-1]
    if z.numel() < CLASS_MAJOR_ROWS * K or z.dim() < 2:
        return torch.log_softmax(z, dim=-1)
    return torch.log_softmax(z.reshape(-1, K).t().contiguous(), dim=0).t().reshape(z.shape)


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
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(dim=-1)
