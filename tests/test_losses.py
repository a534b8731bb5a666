"""The reduction convention of losses.py: per-sample loss, batch = mean (DESIGN E1)."""
from __future__ import annotations

import torch

from bkd_theory import losses


def test_cross_entropy_is_per_sample_and_linear_in_targets():
    g = torch.Generator().manual_seed(0)
    log_q = torch.log_softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), -1)
    t1, t2 = torch.rand(6, 4, generator=g, dtype=torch.float64), torch.rand(6, 4, generator=g, dtype=torch.float64)
    l1 = losses.cross_entropy(t1, log_q)
    assert l1.shape == (6,)
    assert torch.allclose(losses.cross_entropy(2 * t1 - 3 * t2, log_q), 2 * l1 - 3 * losses.cross_entropy(t2, log_q))
    onehot = torch.nn.functional.one_hot(torch.arange(6) % 4, 4).double()
    assert torch.allclose(losses.cross_entropy(onehot, log_q), -log_q[torch.arange(6), torch.arange(6) % 4])


def test_batch_loss_is_mean_not_sum():
    log_q = torch.log_softmax(torch.randn(3, 5, 4, dtype=torch.float64), -1)
    t = torch.softmax(torch.randn(3, 5, 4, dtype=torch.float64), -1)
    assert torch.allclose(losses.batch_loss(t, log_q), losses.cross_entropy(t, log_q).mean(-1))


def test_kl_is_zero_at_equality_and_handles_zero_probabilities():
    log_p = torch.log(torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64))
    assert losses.kl_divergence(log_p, log_p).item() == 0.0
    log_q = torch.log(torch.tensor([[0.25, 0.25, 0.5]], dtype=torch.float64))
    assert torch.isclose(losses.kl_divergence(log_p, log_q), torch.tensor([torch.log(torch.tensor(2.0)).item()], dtype=torch.float64))
