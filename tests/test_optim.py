"""Update rules (engine.optim): Adam equals torch.optim.Adam bit for bit, chains split bit-exactly,
and the configuration validates its hyperparameters."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bkd_theory import sgd
from bkd_theory.engine import RunConfig
from bkd_theory.engine.optim import OPTIMIZERS, Adam


class _Quadratic:
    """A stand-in student: batch_grad = A theta - x (x plays the noisy target), per chain."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A = A

    def batch_grad(self, theta, x, t, out=None):
        g = theta @ self.A.T - x
        return g if out is None else out.copy_(g)


def test_adam_equals_torch_adam_bit_for_bit():
    """50 steps on a noisy quadratic in float64 from the same start and gradients: identical."""
    gen = torch.Generator().manual_seed(0)
    P = 5
    A = torch.randn(P, P, generator=gen, dtype=torch.float64)
    A = A @ A.T / P + torch.eye(P, dtype=torch.float64)
    noise = torch.randn(50, P, generator=gen, dtype=torch.float64)
    theta0 = torch.randn(1, P, generator=gen, dtype=torch.float64)
    rule, student = Adam(0.8, 0.99, 1e-6), _Quadratic(A)
    theta, out = theta0.clone(), torch.empty_like(theta0)
    rule.start(theta)
    ref = torch.nn.Parameter(theta0[0].clone())
    opt = torch.optim.Adam([ref], lr=0.05, betas=(0.8, 0.99), eps=1e-6, foreach=False)
    for k in range(50):
        theta = rule.step(student, theta, noise[k][None], None, 0.05, out).clone()
        ref.grad = (A @ ref.detach() - noise[k])
        opt.step()
        assert torch.equal(theta[0], ref.detach()), k


def test_adam_chain_alone_equals_chain_in_batch():
    kw = dict(task="triangle", teacher="dirichlet:2", optimizer="adam", gamma=0.02, steps=150, eval_every=50, seed=4)
    many, one = sgd.run(chains=5, **kw), sgd.run(chains=1, first_chain=3, **kw)
    np.testing.assert_array_equal(many.theta_final[3], one.theta_final[0])


@pytest.mark.parametrize("bad, name", [
    (dict(optimizer="rmsprop"), "optimizer"), (dict(optimizer="adam", beta1=1.0), "beta1"),
    (dict(optimizer="adam", beta2=-0.1), "beta2"), (dict(optimizer="adam", eps=0.0), "eps"),
    (dict(optimizer="adam", momentum=0.9), "momentum"),
])
def test_bad_optimizer_settings_name_the_parameter(bad, name):
    with pytest.raises(ValueError, match=name):
        RunConfig(**bad)


def test_registry():
    assert {"sgd", "adam"} <= set(OPTIMIZERS.names())
