"""Update rules (engine.optim): Adam equals torch.optim.Adam bit for bit, chains split bit-exactly,
and the configuration validates its hyperparameters."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import synthetic
from bkd_theory import sgd, students
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


def test_rates_are_the_first_order_preconditioners():
    """SGD reports 1 / (1 - beta); Adam reports mean over active chains of 1 / (sqrt(v_hat) + eps)."""
    from bkd_theory.engine.optim import SGD

    assert SGD(0.75).rate(torch.ones(3, dtype=torch.bool)) == pytest.approx(4.0)
    gen = torch.Generator().manual_seed(1)
    A = torch.eye(3, dtype=torch.float64)
    rule, theta = Adam(0.9, 0.99, 1e-3), torch.randn(4, 3, generator=gen, dtype=torch.float64)
    rule.start(theta)
    out = torch.empty_like(theta)
    for k in range(5):
        theta = rule.step(_Quadratic(A), theta, torch.randn(4, 3, generator=gen, dtype=torch.float64), None, 0.01, out).clone()
    active = torch.tensor([True, False, True, True])
    want = (1.0 / ((rule.v / (1 - 0.99**5)).sqrt() + 1e-3))[active].mean(0)
    torch.testing.assert_close(rule.rate(active), want, rtol=1e-12, atol=0.0)


def test_adam_run_at_small_gamma_is_judged_stationary():
    """Adam on dirichlet:1 at gamma = 0.002 from theta*: the preconditioned relaxation (eigenvalues of
    P^1/2 H P^1/2, sum gamma_k P_k) judges the excess risk stationary; the SGD rule (eigenvalues of
    H, sum gamma_k) would not: its unrelaxed bias exceeds the SE."""
    from bkd_theory.stats import unrelaxed_fraction
    from bkd_theory.theory import constants

    r = sgd.run(task="triangle", teacher="dirichlet:1", optimizer="adam", gamma=0.002, steps=6000, eval_every=100,
                chains=64, init="optimum", eval_n=2000, seed=0)
    e = r.summary()["quantities"]["excess_risk"]
    assert e["stationary"] is True, e["stationary_reason"]
    task, student = synthetic.make_task("triangle"), students.Linear(synthetic.make_task("triangle"), gauge="pinned",
                                                                      dtype=torch.float64)
    H = constants.hessian_at_optimum(task, student, n_mc=4096, seed=0, method="linear")
    frac = unrelaxed_fraction(constants.curvature(H).eigenvalues, 1.0, 0.002 * e["window"][0])
    assert abs(e["value"]) * frac / (1 - frac) > e["se"]  # the SGD-rule check would fail this run


@pytest.mark.parametrize("command", ["run", "predict"])
@pytest.mark.parametrize("flags, message", [
    (["--lam", "1.5"], "lam must be in [0, 1]"), (["--optimizer", "rmsprop"], "optimizer must be one of sgd, adam"),
    (["--optimizer", "adam", "--beta1", "1"], "beta1 must be in [0, 1)"),
    (["--optimizer", "adam", "--beta2", "-0.5"], "beta2 must be in [0, 1)"),
    (["--optimizer", "adam", "--eps", "0"], "eps must be > 0"),
    (["--optimizer", "adam", "--momentum", "0.9"], "momentum is heavy-ball SGD's"),
])
def test_cli_refuses_bad_optimizer_settings_with_exit_2(capsys, command, flags, message):
    from bkd_theory import cli

    assert cli.main([command, "--steps", "2", "--chains", "1", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
