"""ModuleStudent: any nn.Module as a student (open bench). Float64 throughout, seeds fixed.

- A residual tanh network with LayerNorm runs through `sgd.run`; its chain 3 of 6 equals the same
  chain run alone, bit for bit; its per-sample gradients match central finite differences of
  `log_probs` (error O(h^2) ~ 1e-10 at h = 1e-5; tolerance 1e-7).
- The fast students (Linear, MLP) equal ModuleStudent on the same weights, and ModuleStudent equals
  the generic autograd oracle.
- Layers that mix samples in training mode are refused with a message that names the layer.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import oracles
import synthetic
from bkd_theory import sgd
from bkd_theory.students import MLP, ModuleStudent, build_student

F64 = torch.float64


class ResTanh(nn.Module):
    """x -> tanh(A x) -> h + tanh(B LayerNorm(h)) -> logits."""

    def __init__(self, d: int, k: int, width: int = 8) -> None:
        super().__init__()
        self.inp, self.norm, self.block, self.out = nn.Linear(d, width), nn.LayerNorm(width), nn.Linear(width, width), nn.Linear(width, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        return self.out(h + torch.tanh(self.block(self.norm(h))))


def _restanh(task) -> ModuleStudent:
    torch.manual_seed(0)
    return ModuleStudent(ResTanh(task.dim, task.num_classes), dtype=torch.float64)


def test_residual_layernorm_chain_split_is_bit_exact():
    task = synthetic.make_task("triangle")
    student = _restanh(task)
    kw = dict(gamma=0.05, steps=300, seed=1, init="random", eval_every=100)
    batch = sgd.run(task, student, "onehot", chains=6, **kw)
    alone = sgd.run(task, student, "onehot", chains=1, first_chain=3, **kw)
    np.testing.assert_array_equal(alone.theta_final[0], batch.theta_final[3])
    for q in ("excess_risk", "val_loss", "grad_second_moment"):
        np.testing.assert_array_equal(alone.values(q)[1][:, 0], batch.values(q)[1][:, 3])
    assert not np.array_equal(batch.theta_final[0], batch.theta_final[1])
    assert batch.config["student"] == "module:ResTanh" and np.isnan(batch.values("dist2")[1]).all()


def test_residual_layernorm_per_sample_grads_match_finite_differences():
    task = synthetic.make_task("triangle")
    student = _restanh(task)
    gen = torch.Generator().manual_seed(2)
    theta = 0.5 * torch.randn(2, student.num_params, generator=gen, dtype=F64)
    x = torch.randn(2, 3, task.dim, generator=gen, dtype=F64)
    t = torch.softmax(torch.randn(2, 3, task.num_classes, generator=gen, dtype=F64), -1)
    g = student.per_sample_grads(theta, x, t)
    h, E = 1e-5, torch.eye(student.num_params, dtype=F64)
    loss = lambda th: -(t * student.log_probs(th, x)).sum(-1)  # noqa: E731  [R, B]
    fd = torch.stack([(loss(theta + h * E[j]) - loss(theta - h * E[j])) / (2 * h) for j in range(student.num_params)], -1)
    torch.testing.assert_close(g, fd, rtol=0, atol=1e-7)
    torch.testing.assert_close(g, oracles.per_sample_grads_loop(student, theta, x, t), rtol=0, atol=1e-12)
    torch.testing.assert_close(student.batch_grad(theta, x, t), g.mean(1), rtol=0, atol=1e-13)
    J = student.prob_jacobian(theta[0], x[0])
    torch.testing.assert_close(J, oracles.prob_jacobian_loop(student, theta[0], x[0]), rtol=0, atol=1e-12)
    H = student.hessian(theta[0], x[0], t[0])
    torch.testing.assert_close(H, oracles.hessian_loop(student, theta[0], x[0], t[0]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("spec,name,gauge", [("linear", "triangle", "pinned"), ("linear", "triangle", "full"),
                                             ("linear", "paper", "pinned"), ("mlp:6x5:tanh", "triangle", "pinned"),
                                             ("mlp:7:relu", "teacher-net", "pinned")])
def test_fast_students_equal_module_student_on_the_same_weights(spec, name, gauge):
    task = synthetic.make_task(name)
    fast = build_student(spec, task, gauge=gauge, dtype=F64)
    module, to_module = oracles.reference_module(fast)
    ref = ModuleStudent(module, dtype=F64)
    gen = torch.Generator().manual_seed(3)
    theta = 0.3 * torch.randn(3, fast.num_params, generator=gen, dtype=F64)
    x = torch.as_tensor(task.sample(12, 4)[0], dtype=F64).reshape(3, 4, -1)
    t = torch.softmax(torch.randn(3, 4, task.num_classes, generator=gen, dtype=F64), -1)
    th = to_module(theta)
    torch.testing.assert_close(fast.log_probs(theta, x), ref.log_probs(th, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(to_module(fast.per_sample_grads(theta, x, t)), ref.per_sample_grads(th, x, t), rtol=0, atol=1e-12)
    torch.testing.assert_close(to_module(fast.batch_grad(theta, x, t)), ref.batch_grad(th, x, t), rtol=0, atol=1e-12)
    torch.testing.assert_close(to_module(fast.prob_jacobian(theta[0], x[0])), ref.prob_jacobian(th[0], x[0]), rtol=0, atol=1e-12)


def test_module_student_optimum_from_the_task_network_or_given():
    task = synthetic.make_task("teacher-net")
    net = task.network()
    seq = nn.Sequential(nn.Linear(task.dim, net.widths[0]), nn.Tanh(), nn.Linear(net.widths[0], task.num_classes))
    student = ModuleStudent(seq, dtype=F64)
    star = student.optimum(task)
    x = torch.as_tensor(task.sample(20, 5)[0], dtype=F64)
    np.testing.assert_allclose(student.log_probs(star[None], x[None])[0].numpy(), task.log_bcp(x.numpy()), atol=1e-12)
    torch.testing.assert_close(star, MLP(task, widths=net.widths, activation="tanh", dtype=F64).optimum(task), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not realizable"):
        _restanh(task).optimum(task)
    given = ModuleStudent(ResTanh(task.dim, task.num_classes), dtype=F64, theta_star=torch.zeros(_restanh(task).num_params))
    assert torch.equal(given.optimum(task), torch.zeros(given.num_params, dtype=F64))
    with pytest.raises(ValueError, match="theta_star"):
        ModuleStudent(seq, theta_star=torch.zeros(3))


@pytest.mark.parametrize("layer,match", [(nn.BatchNorm1d(8), "BatchNorm1d"), (nn.Dropout(0.1), "Dropout")])
def test_sample_mixing_layers_in_training_mode_are_refused(layer, match):
    module = nn.Sequential(nn.Linear(2, 8), layer, nn.Linear(8, 3))
    with pytest.raises(ValueError, match=match):
        ModuleStudent(module)
    ModuleStudent(module.eval(), dtype=F64)  # a fixed function in eval mode


def test_bad_modules_name_the_problem():
    with pytest.raises(ValueError, match="nn.Module"):
        ModuleStudent("linear")
    with pytest.raises(ValueError, match="logits"):
        ModuleStudent(nn.Linear(2, 1))
    with pytest.raises(ValueError, match="K="):
        sgd.run(synthetic.make_task("paper"), ModuleStudent(nn.Linear(2, 3)), "onehot", steps=1, chains=1,
                init="random", instruments=[])
