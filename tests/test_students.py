"""Students: closed forms (E11) against torch.func, torch.func against a Python autograd loop (STYLE 3)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import oracles
import synthetic
from bkd_theory import rng as bkd_rng
from bkd_theory import sgd, students
from bkd_theory.students import ACTIVATIONS, MLP, Linear, build_student, torch_features

F64 = torch.float64
LINEAR_CASES = [  # (task, gauge, features)
    ("triangle", "pinned", "linear"),
    ("triangle", "full", "linear"),
    ("hetero", "pinned", "quadratic"),
    ("hetero", "full", "quadratic"),
]


def _batch(task, R, B, seed, *, simplex=True):
    g = np.random.default_rng(seed)
    x, _ = task.sample(R * B, g)
    t = g.dirichlet(np.ones(task.num_classes), size=R * B)
    if not simplex:  # additive-noise targets leave the simplex; E11 carries the factor sum(t)
        t = t + 0.3 * g.standard_normal(t.shape)
    return torch.tensor(x, dtype=F64).reshape(R, B, -1), torch.tensor(t, dtype=F64).reshape(R, B, -1)


def _theta(student, R, seed):
    return torch.tensor(np.random.default_rng(seed).standard_normal((R, student.num_params)), dtype=F64)


@pytest.mark.parametrize("simplex", [True, False], ids=["simplex", "off-simplex"])
@pytest.mark.parametrize("name,gauge,features", LINEAR_CASES)
def test_linear_closed_form_matches_torch_func_and_loop(name, gauge, features, simplex):
    task = synthetic.make_task(name)
    s = Linear(task, gauge=gauge, features=features, dtype=F64)
    theta, (x, t) = _theta(s, 3, 0), _batch(task, 3, 4, 1, simplex=simplex)
    fast = s.per_sample_grads(theta, x, t)
    func = oracles.per_sample_grads_func(s, theta, x, t)
    torch.testing.assert_close(fast, func, rtol=0, atol=1e-10)
    torch.testing.assert_close(func, oracles.per_sample_grads_loop(s, theta, x, t), rtol=0, atol=1e-10)
    torch.testing.assert_close(s.batch_grad(theta, x, t), fast.mean(dim=1), rtol=0, atol=1e-12)
    out = torch.full_like(theta, float("nan"))  # b = 1 takes its own path, written into `out`
    torch.testing.assert_close(s.batch_grad(theta, x[:, :1], t[:, :1], out=out), fast[:, 0], rtol=0, atol=1e-12)
    assert torch.equal(out, fast[:, 0])
    torch.testing.assert_close(s.batch_grad(theta, x, t, scale=-0.3), -0.3 * fast.mean(dim=1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("features", ["linear", "quadratic"])
def test_linear_large_batches_and_shared_inputs_use_blas_paths_correctly(features):
    task = synthetic.make_task("triangle")
    s = Linear(task, features=features, dtype=F64)
    theta, (x, t) = _theta(s, 3, 13), _batch(task, 3, 40, 14, simplex=False)  # B > SMALL_BATCH
    fast = s.per_sample_grads(theta, x, t)
    torch.testing.assert_close(fast, oracles.per_sample_grads_func(s, theta, x, t), rtol=0, atol=1e-10)
    torch.testing.assert_close(s.batch_grad(theta, x, t), fast.mean(dim=1), rtol=0, atol=1e-12)
    shared = x[0].expand(3, -1, -1)  # one eval set for every chain (stride 0)
    expected = torch.stack([s.log_probs(theta[r : r + 1], x[0, None, :5])[0] for r in range(3)])
    torch.testing.assert_close(s.log_probs(theta, shared)[:, :5], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.log_probs(theta, shared), s.log_probs(theta, shared.contiguous()), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype,ulps", [(torch.float32, 64), (F64, 64)])
@pytest.mark.parametrize("gauge", ["pinned", "full"])
def test_linear_class_major_evaluation_matches_the_row_major_formula(gauge, dtype, ulps):
    """Beyond SMALL_BATCH points the linear student's log q is computed class-major: equal to
    log_softmax of the row-major logits up to `ulps` units of the largest |log q| (another summation
    order in the GEMM and the softmax), the same for chain r alone as inside the batch (bit for bit),
    and normalised."""
    task = synthetic.make_task("paper")
    s = Linear(task, gauge=gauge, dtype=dtype)
    theta = _theta(s, 5, 21).to(dtype)
    x = torch.tensor(task.sample(700, np.random.default_rng(22))[0], dtype=dtype).expand(5, -1, -1)
    fast = s.log_probs(theta, x)
    assert fast.shape == (5, 700, task.num_classes)
    slow = torch.log_softmax(s._logits(theta, s.xt(x)), dim=-1)  # the row-major formula
    tol = ulps * torch.finfo(dtype).eps * float(slow.abs().max())
    torch.testing.assert_close(fast, slow, rtol=0, atol=tol)
    for r in (0, 3):
        assert torch.equal(s.log_probs(theta[r : r + 1], x[:1]), fast[r : r + 1])
    torch.testing.assert_close(fast.exp().sum(-1), torch.ones(5, 700, dtype=dtype), rtol=0, atol=1e3 * torch.finfo(dtype).eps)


def test_full_gauge_gradient_rows_sum_to_zero_on_simplex():
    # gradient rows sum to (sum t)(sum q) - sum t = 0, so SGD from the sum-zero optimum stays sum-zero
    task = synthetic.make_task("triangle")
    s = Linear(task, gauge="full", dtype=F64)
    theta, (x, t) = _theta(s, 2, 2), _batch(task, 2, 5, 3)
    g = s.per_sample_grads(theta, x, t).reshape(2, 5, task.num_classes, -1)
    assert g.sum(dim=2).abs().max() < 1e-12


@pytest.mark.parametrize("spec,name", [("mlp:8x6:tanh", "teacher-net"), ("mlp:7:relu", "triangle"), ("mlp:5:gelu", "paper")])
def test_mlp_per_sample_grads_match_autograd_loop(spec, name):
    task = synthetic.make_task(name)
    s = build_student(spec, task, dtype=F64)
    theta, (x, t) = 0.5 * _theta(s, 3, 4), _batch(task, 3, 4, 5, simplex=False)
    fast = s.per_sample_grads(theta, x, t)
    torch.testing.assert_close(fast, oracles.per_sample_grads_loop(s, theta, x, t), rtol=0, atol=1e-10)
    torch.testing.assert_close(s.batch_grad(theta, x, t), oracles.batch_grad_loop(s, theta, x, t), rtol=0, atol=1e-10)


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("spec,name,features", [("linear", "triangle", "linear"), ("linear", "hetero", "quadratic"), ("mlp:6x5:relu", "triangle", "linear"), ("mlp:4:tanh", "paper", "linear")])
def test_fused_sgd_step_equals_theta_minus_gamma_grad(spec, name, features, B):
    task = synthetic.make_task(name)
    s = build_student(spec, task, features=features, dtype=F64)
    theta, (x, t) = _theta(s, 3, 15), _batch(task, 3, B, 16, simplex=False)
    out = torch.full_like(theta, float("nan"))
    assert s.sgd_step(theta, x, t, 0.07, out=out) is out
    torch.testing.assert_close(out, theta - 0.07 * s.batch_grad(theta, x, t), rtol=0, atol=1e-12)


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_hand_written_backward_matches_torch_func(activation, B):
    task = synthetic.make_task("triangle")
    s = MLP(task, widths=(6, 5), activation=activation, dtype=F64)
    theta, (x, t) = _theta(s, 2, 11), _batch(task, 2, B, 12, simplex=False)
    expected = s.per_sample_grads(theta, x, t).mean(dim=1)
    torch.testing.assert_close(s.batch_grad(theta, x, t), expected, rtol=0, atol=1e-12)
    out = torch.full_like(theta, float("nan"))
    assert s.batch_grad(theta, x, t, out=out) is out
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.batch_grad(theta, x, t, scale=-0.3), -0.3 * expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("spec,name,gauge,features", [("linear", *c) for c in LINEAR_CASES] + [("mlp:6:tanh", "triangle", "pinned", "linear")])
def test_prob_jacobian_and_hessian_match_autograd(spec, name, gauge, features):
    task = synthetic.make_task(name)
    s = build_student(spec, task, gauge=gauge, features=features, dtype=F64)
    theta = 0.5 * _theta(s, 1, 6)[0]
    x, t = _batch(task, 1, 5, 7, simplex=False)
    J = s.prob_jacobian(theta, x[0])
    torch.testing.assert_close(J, oracles.prob_jacobian_loop(s, theta, x[0]), rtol=0, atol=1e-10)
    assert J.sum(dim=1).abs().max() < 1e-12  # sum_k J_k = 0 (DESIGN 2.5)
    torch.testing.assert_close(s.hessian(theta, x[0], t[0]), oracles.hessian_loop(s, theta, x[0], t[0]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name,gauge,features", LINEAR_CASES + [("paper", "pinned", "linear")])
def test_linear_optimum_reproduces_bcp(name, gauge, features):
    task = synthetic.make_task(name)
    s = Linear(task, gauge=gauge, features=features, dtype=F64)
    x, _ = task.sample(50, np.random.default_rng(8))
    log_q = s.log_probs(s.optimum(task)[None], torch.tensor(x)[None])[0]
    np.testing.assert_allclose(log_q.numpy(), task.log_bcp(x), rtol=0, atol=1e-9)


def test_mlp_optimum_reproduces_teacher_network_and_bcp_targets_have_zero_gradient():
    task = synthetic.make_task("teacher-net")
    s = MLP(task, widths=task.widths, activation=task.activation, dtype=F64)
    x, _ = task.sample(40, np.random.default_rng(9))
    star = s.optimum(task)[None]
    xt = torch.tensor(x)[None]
    np.testing.assert_allclose(s.log_probs(star, xt)[0].numpy(), task.log_bcp(x), rtol=0, atol=1e-10)
    g = s.per_sample_grads(star, xt, torch.tensor(task.bcp(x))[None])  # Prop. 2: interpolation
    assert g.abs().max() < 1e-10


def test_not_realizable_raises():
    with pytest.raises(ValueError, match="not realizable"):
        Linear(synthetic.make_task("teacher-net")).optimum(synthetic.make_task("teacher-net"))
    with pytest.raises(ValueError, match="not realizable"):
        MLP(synthetic.make_task("triangle")).optimum(synthetic.make_task("triangle"))
    net = synthetic.make_task("teacher-net")
    with pytest.raises(ValueError, match="not realizable"):
        MLP(net, widths=(5,), activation=net.activation).optimum(net)


@pytest.mark.parametrize("kind", ["linear", "quadratic"])
def test_torch_features_match_synthetic(kind):
    x = np.random.default_rng(10).standard_normal((6, 4))
    np.testing.assert_array_equal(torch_features(torch.tensor(x), kind).numpy(), synthetic.features(x, kind))


def test_init_params_per_chain_streams():
    task = synthetic.make_task("triangle")
    s = Linear(task, dtype=F64)
    streams = [bkd_rng.chain_streams(0, r) for r in range(4)]
    star = s.optimum(task)
    assert torch.equal(s.init_params("optimum", 4, task, streams, 0.5), star.expand(4, -1))
    assert torch.equal(s.init_params("zero", 4, task, streams, 0.5), torch.zeros(4, s.num_params, dtype=F64))
    pert = s.init_params("perturbed", 4, task, [bkd_rng.chain_streams(0, r) for r in range(4)], 0.5)
    alone = s.init_params("perturbed", 1, task, [bkd_rng.chain_streams(0, 2)], 0.5)
    assert torch.equal(pert[2], alone[0])  # chain 2 draws from its own stream only
    assert not torch.equal(pert[0], pert[1])
    expected = star + 0.5 * torch.tensor(bkd_rng.chain_streams(0, 3).init.standard_normal(s.num_params))
    torch.testing.assert_close(pert[3], expected, rtol=0, atol=0)


def test_mlp_random_init_is_nn_linear_uniform_and_reproducible():
    task = synthetic.make_task("paper")
    s = MLP(task, widths=(16, 8))
    a = s.init_params("random", 3, task, [bkd_rng.chain_streams(1, r) for r in range(3)], 1.0)
    b = s.init_params("random", 3, task, [bkd_rng.chain_streams(1, r) for r in range(3)], 1.0)
    assert a.dtype == torch.float32 and torch.equal(a, b)
    params = s.unflatten(a[0])
    assert params["0.weight"].abs().max() <= 1 / np.sqrt(30) and params["0.bias"].abs().max() <= 1 / np.sqrt(30)
    assert params["2.weight"].abs().max() <= 1 / 4 and params["4.bias"].abs().max() <= 1 / np.sqrt(8)
    assert params["2.weight"].abs().max() > 0.9 / 4  # spread over the whole interval


@pytest.mark.parametrize("spec,expected", [("linear", "linear"), ("mlp", "mlp:128x128:relu"), ("MLP:64x64", "mlp:64x64:relu"), ("mlp:32:tanh", "mlp:32:tanh")])
def test_build_student_specs(spec, expected):
    assert build_student(spec, synthetic.make_task("triangle")).spec == expected


@pytest.mark.parametrize("kwargs,param", [
    ({"spec": "cnn"}, "student"), ({"spec": "mlp:0x3"}, "student"), ({"spec": "mlp:ax3"}, "student"),
    ({"spec": "mlp:8:swish"}, "activation"), ({"spec": "linear", "gauge": "half"}, "gauge"),
    ({"spec": "linear", "features": "cubic"}, "features"), ({"spec": "linear", "dtype": "float16"}, "dtype"),
])
def test_bad_student_input(kwargs, param):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=param):
        build_student(kwargs.pop("spec"), synthetic.make_task("triangle"), **kwargs)


def test_bad_init_input():
    task = synthetic.make_task("triangle")
    s = Linear(task)
    with pytest.raises(ValueError, match="init"):
        s.init_params("lucky", 1, task, [bkd_rng.chain_streams(0, 0)], 0.5)
    with pytest.raises(ValueError, match="init_scale"):
        s.init_params("perturbed", 1, task, [bkd_rng.chain_streams(0, 0)], -1.0)
    with pytest.raises(ValueError, match="streams"):
        s.init_params("perturbed", 2, task, [bkd_rng.chain_streams(0, 0)], 0.5)


def test_identifiable_removes_exactly_the_gauge_null_space():
    # full gauge: the removed part is the range complement of H (theory's null basis) and leaves q unchanged
    from bkd_theory.theory.constants import null_basis

    task = synthetic.make_task("triangle")
    st = students.Linear(task, gauge="full", dtype=torch.float64)
    N = torch.as_tensor(null_basis(st))
    v = torch.randn(4, st.num_params, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(st.identifiable(v), v - (v @ N) @ N.T, atol=1e-14)
    pinned = students.Linear(task, gauge="pinned", dtype=torch.float64)
    assert torch.equal(pinned.identifiable(v[:, : pinned.num_params]), v[:, : pinned.num_params])
    mlp = students.build_student("mlp:4", task, dtype=torch.float64)
    w = torch.randn(2, mlp.num_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = torch.randn(2, 5, task.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    shift = w - mlp.identifiable(w)
    assert shift.abs().max() > 0.1
    assert torch.allclose(mlp.log_probs(w, x), mlp.log_probs(w + shift, x), atol=1e-13)


def test_full_gauge_distance_to_optimum_decays_with_bcp_targets():
    # the gauge component of a perturbed start has zero gradient: dist2 must be taken without it
    task = synthetic.make_task("triangle")
    st = students.Linear(task, gauge="full", dtype=torch.float64)
    run = sgd.run(task, st, "bcp", gamma=0.2, steps=2000, chains=4, eval_every=1000, init="random", init_scale=1.0)
    assert run.values("dist2")[1][-1].max() < 1e-12


@pytest.mark.parametrize("kd", [False, True])
def test_mlp_gradient_norms_without_per_sample_gradients(kd):
    """MLP.grad_norms_and_sum (outer-product norms, one bmm per layer) equals the generic path over
    `per_sample_grads` to float64 rounding (relative 1e-13: sums of ~2e4 products), E1 and E22 targets."""
    from bkd_theory.students.base import Student
    from bkd_theory.students.kd import KDTargets

    task = synthetic.make_task("paper", standardize=True)
    student = build_student("mlp:16x8:tanh", task, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    theta = 0.3 * torch.randn(3, student.num_params, generator=g, dtype=torch.float64)
    x = torch.randn(3, 11, task.dim, generator=g, dtype=torch.float64)
    t = torch.softmax(torch.randn(3, 11, task.num_classes, generator=g, dtype=torch.float64), dim=-1)
    if kd:
        t = KDTargets(0.4 * t, 0.6 * torch.softmax(torch.randn(t.shape, generator=g, dtype=torch.float64), -1), 2.0)
    (sq, total), (sq0, total0) = student.grad_norms_and_sum(theta, x, t), Student.grad_norms_and_sum(student, theta, x, t)
    np.testing.assert_allclose(sq.numpy(), sq0.numpy(), rtol=1e-13)
    np.testing.assert_allclose(total.numpy(), total0.numpy(), rtol=1e-13, atol=1e-15)
