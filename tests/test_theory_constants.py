"""Constants (DESIGN 2.6): H at theta*, mu/L/kappa on the range, local constants, calL (E12), F*."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import synthetic
from bkd_theory import rng, students
from bkd_theory.theory import constants


def _linear(task_name="triangle", gauge="pinned"):
    task = synthetic.make_task(task_name)
    return task, students.Linear(task, gauge=gauge, dtype=torch.float64)


@pytest.mark.parametrize("gauge", ["pinned", "full"])
def test_curvature_on_the_range(gauge):
    task, student = _linear("triangle", gauge)
    H = constants.hessian_at_optimum(task, student, n_mc=2000, seed=1)
    cur = constants.curvature(H, constants.null_basis(student))
    ev = np.sort(np.linalg.eigvalsh(H))[::-1]  # oracle: the top (K-1)(d+1) eigenvalues (the range of H)
    ev = ev[: (task.num_classes - 1) * (task.dim + 1)]
    assert cur.mu == pytest.approx(ev[-1], rel=1e-10)
    assert cur.L == pytest.approx(ev[0], rel=1e-10)
    assert cur.null_dim == (task.dim + 1 if gauge == "full" else 0)
    assert len(cur.eigenvalues) == (task.num_classes - 1) * (task.dim + 1)
    if gauge == "full":  # the gauge directions 1_K kron c are exactly null
        N = constants.null_basis(student)
        assert np.abs(H @ N).max() < 1e-12
        assert "range" in cur.region


def test_local_constants_bracket_the_optimum():
    task, student = _linear()
    H = constants.hessian_at_optimum(task, student, n_mc=2048, seed=0, method="student")
    at_star = constants.curvature(H)
    loc0 = constants.local_constants(task, student, radius=0.0, n_points=0, n_mc=2048, seed=0)
    loc = constants.local_constants(task, student, radius=1.0, n_points=6, n_mc=2048, seed=0)
    # radius 0 is theta* itself; a ball can only widen [mu, L]
    assert loc0.eig_min[0] == pytest.approx(loc.eig_min[0])
    assert loc.mu <= loc0.mu and loc.L >= loc0.L and loc.kappa >= loc0.kappa
    assert "ball of radius 1" in loc.region
    # same inputs are not shared with hessian_at_optimum (key 2 vs 0): agree within MC error only
    assert loc0.mu == pytest.approx(at_star.mu, rel=0.1)


def test_expected_smoothness_formula():
    x, _ = synthetic.make_task("triangle").sample(500, rng.generator(0, 1))
    xt2 = (synthetic.augmented(x) ** 2).sum(1)
    one = constants.expected_smoothness(x, 3, batch=1)
    assert one.calL == pytest.approx(xt2.max() / 2)  # E12: max_i ||xt_i||^2 / 2
    full = constants.expected_smoothness(x, 3, batch=500)
    assert full.calL == pytest.approx(full.L)  # b = n: the full-batch smoothness
    vals = [constants.expected_smoothness(x, 3, batch=b).calL for b in (1, 2, 8, 64, 500)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    assert constants.expected_smoothness(x, 2, gauge="pinned").calL == pytest.approx(xt2.max() / 4)
    assert constants.expected_smoothness(x, 3, target_factor=1.03).calL == pytest.approx(1.03 * one.calL)
    with pytest.raises(ValueError, match="batch"):
        constants.expected_smoothness(x, 3, batch=501)


def test_e12_bounds_per_sample_smoothness():
    """L_i = ||xt_i||^2 / 2 bounds the largest eigenvalue of every per-sample Hessian."""
    task, student = _linear("triangle", "full")
    x, _ = task.sample(64, rng.generator(0, 2))
    gen = rng.generator(0, 3)
    for _ in range(5):
        theta = student.optimum(task) + torch.as_tensor(gen.standard_normal(student.num_params) * 2)
        for xi in x[:16]:
            t = torch.as_tensor(gen.dirichlet(np.ones(3)))[None]
            h = student.hessian(theta, torch.as_tensor(xi[None]), t).numpy()
            assert np.linalg.eigvalsh(h)[-1] <= (synthetic.augmented(xi[None]) ** 2).sum() / 2 + 1e-12


def test_empirical_smoothness_below_e12():
    task, student = _linear()
    emp = constants.expected_smoothness_empirical(task, student, n_mc=2048, seed=0)
    e12 = constants.training_smoothness(task, student, 10_000, seed=0)
    assert 0 < emp.calL.value < e12.calL
    assert np.all(emp.ratios > 0) and "max over theta*" in emp.region


def test_f_star_is_conditional_entropy():
    task = synthetic.make_task("triangle")
    assert constants.f_star(task).value == pytest.approx(task.conditional_entropy().value)


def test_nonlinear_student_has_no_e12():
    task = synthetic.make_task("teacher-net")
    student = students.build_student("mlp:16:tanh", task, dtype=torch.float64)
    with pytest.raises(ValueError, match="linear softmax"):
        constants.training_smoothness(task, student, 100)
