"""Contract: every registered student (and a user's nn.Module) through one battery (DESIGN 2.5, 4).

Each registered student needs examples in `cases.STUDENT_EXAMPLES`. For every example, float64:
- per-sample gradients, minibatch gradient, the SGD step, the probability Jacobian and the Hessian
  against the generic autograd oracle (`oracles`), to 1e-10 (rounding of a few hundred operations);
- the gauge directions change no log-probability and `identifiable` removes exactly them;
- chain 2 of a 4-chain run equals the same chain run alone, bit for bit (batch 1 and 3).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import oracles
import synthetic
from bkd_theory import sgd
from bkd_theory.students import STUDENTS, ModuleStudent, build_student
from cases import STUDENT_EXAMPLES
from user_extensions import small_mlp

F64 = torch.float64
EXAMPLES = [(name, *ex) for name in STUDENTS.names() for ex in STUDENT_EXAMPLES.get(name, [(None,) * 4])]
EXAMPLES.append(("module", "user_extensions:small_mlp", "triangle", "pinned", "linear"))
IDS = [f"{e[1]}-{e[2]}-{e[3]}-{e[4]}" for e in EXAMPLES]


@pytest.mark.parametrize("name", STUDENTS.names())
def test_every_student_has_examples(name):
    assert STUDENT_EXAMPLES.get(name), f"add examples of the student {name!r} to tests/cases.py STUDENT_EXAMPLES"


def _make(spec, task_name, gauge, features):
    if spec is None:
        pytest.skip("no example")
    task = synthetic.make_task(task_name)
    return task, build_student(spec, task, gauge=gauge, features=features, dtype=F64)


def _batch(task, student, R, B, seed):
    gen = torch.Generator().manual_seed(seed)
    theta = 0.4 * torch.randn(R, student.num_params, generator=gen, dtype=F64)
    x = torch.as_tensor(task.sample(R * B, seed)[0], dtype=F64).reshape(R, B, -1)
    t = torch.softmax(torch.randn(R, B, task.num_classes, generator=gen, dtype=F64), -1) + 0.1  # off the simplex
    return theta, x, t


@pytest.mark.parametrize("name,spec,task_name,gauge,features", EXAMPLES, ids=IDS)
def test_derivatives_match_the_autograd_oracle(name, spec, task_name, gauge, features):
    task, s = _make(spec, task_name, gauge, features)
    theta, x, t = _batch(task, s, 2, 3, 1)
    g = s.per_sample_grads(theta, x, t)
    torch.testing.assert_close(g, oracles.per_sample_grads_loop(s, theta, x, t), rtol=0, atol=1e-10)
    torch.testing.assert_close(s.batch_grad(theta, x, t), oracles.batch_grad_loop(s, theta, x, t), rtol=0, atol=1e-10)
    for B in (1, 3):
        out = torch.full_like(theta, float("nan"))
        s.sgd_step(theta, x[:, :B], t[:, :B], 0.07, out=out)
        torch.testing.assert_close(out, theta - 0.07 * s.batch_grad(theta, x[:, :B], t[:, :B]), rtol=0, atol=1e-12)
    J = s.prob_jacobian(theta[0], x[0])
    torch.testing.assert_close(J, oracles.prob_jacobian_loop(s, theta[0], x[0]), rtol=0, atol=1e-10)
    H = s.hessian(theta[0], x[0], t[0])
    torch.testing.assert_close(H, oracles.hessian_loop(s, theta[0], x[0], t[0]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name,spec,task_name,gauge,features", EXAMPLES, ids=IDS)
def test_gauge_directions_change_nothing(name, spec, task_name, gauge, features):
    task, s = _make(spec, task_name, gauge, features)
    theta, x, _ = _batch(task, s, 2, 4, 2)
    N = torch.as_tensor(s.gauge_basis(), dtype=F64)
    assert torch.allclose(N.T @ N, torch.eye(N.shape[1], dtype=F64), atol=1e-12)
    if N.shape[1]:
        shifted = theta + (torch.randn(2, N.shape[1], generator=torch.Generator().manual_seed(3), dtype=F64) @ N.T)
        torch.testing.assert_close(s.log_probs(shifted, x), s.log_probs(theta, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(s.identifiable(theta), theta - (theta @ N) @ N.T, rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name,spec,task_name,gauge,features", EXAMPLES, ids=IDS)
def test_chain_split_is_bit_exact(name, spec, task_name, gauge, features, batch):
    task, s = _make(spec, task_name, gauge, features)
    kw = dict(gamma=0.05, steps=80, seed=2, init="random", batch=batch, eval_every=40)
    many = sgd.run(task, s, "dirichlet:2", chains=4, **kw)
    alone = sgd.run(task, s, "dirichlet:2", chains=1, first_chain=2, **kw)
    np.testing.assert_array_equal(alone.theta_final[0], many.theta_final[2])
    for q in many.quantities:
        np.testing.assert_array_equal(alone.values(q)[1][:, 0], many.values(q)[1][:, 2], err_msg=q)


def test_module_student_from_a_user_factory():
    task = synthetic.make_task("triangle")
    s = build_student("user_extensions:small_mlp", task, dtype=F64)
    assert isinstance(s, ModuleStudent) and s.num_params == sum(p.numel() for p in small_mlp(2, 3).parameters())
