"""The reduction convention of losses.py: per-sample loss, batch = mean (DESIGN E1)."""
from __future__ import annotations

import pytest
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K", [2, 3, 5, 8, 17])
def test_class_major_log_softmax(dtype, K):
    """`losses.log_softmax` (class-major for >= CLASS_MAJOR_ROWS rows) against torch's row-major kernel:
    bit for bit for K <= 8 (what keeps every committed figure's numbers), to rounding for larger K
    (a few ulp of values of order log K plus the logits' scale)."""
    from bkd_theory.losses import CLASS_MAJOR_ROWS, log_softmax

    g = torch.Generator().manual_seed(K)
    for shape in [(3, 7, K), (CLASS_MAJOR_ROWS * 4, K), (40, 300, K)]:
        for scale in (0.1, 10.0, 300.0):
            z = scale * torch.randn(*shape, generator=g, dtype=dtype)
            fast, ref = log_softmax(z), torch.log_softmax(z, dim=-1)
            if K <= 8:
                assert torch.equal(fast, ref), (shape, scale)
            else:
                eps = torch.finfo(dtype).eps
                assert (fast - ref).abs().max() <= 8 * eps * (1 + ref.abs().max()), (shape, scale)
