"""sigma_T^2 and C_T at theta* (E3-E11): closed forms vs the general route vs Monte Carlo.

Three independent routes: the closed forms (E11 factors for the linear student, or the Jacobian
sums of E6/E7), the general route E4 (prob_jacobian + the teacher's exact Cov), and direct Monte
Carlo of per-sample gradients with sampled targets. The first two are the same function of x, so on
the same inputs they agree to rounding; Monte Carlo uses other inputs and other targets, so it
agrees within 4 combined SE (a 4-sigma band: ~6e-5 false alarms per case).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import synthetic
from bkd_theory import rng, students, teachers
from bkd_theory.teachers import FunctionTeacher
from bkd_theory import theory
from bkd_theory.theory import constants, predictions as pr
from cases import case_ids, cases_with

SIGMA2 = cases_with("sigma2-")
N_MC, N_ORACLE = 2000, 4000


def _objects(case):
    task = synthetic.make_task(case.task, standardize=case.standardize)
    student = students.build_student(case.student, task, gauge=case.gauge, features=case.features, dtype=torch.float64)
    return task, student, teachers.parse_teacher(case.teacher)


def _within(a, b, k=4.0):
    return abs(a.value - b.value) <= k * math.hypot(a.se, b.se)


@pytest.mark.parametrize("case", SIGMA2, ids=case_ids(SIGMA2))
def test_closed_forms_equal_general_route_and_monte_carlo(case):
    task, student, teacher = _objects(case)
    general = pr.gradient_noise(task, student, teacher, n_mc=N_MC, seed=1, matrix=False)
    linear = pr.sigma2_closed_form(task, student, teacher, n_mc=N_MC, seed=1, route="linear")
    jac = pr.sigma2_closed_form(task, student, teacher, n_mc=N_MC, seed=1, route="jacobian")
    # same inputs, same function of x: equal up to rounding
    assert linear.value == pytest.approx(general.sigma2.value, rel=1e-9)
    assert jac.value == pytest.approx(general.sigma2.value, rel=1e-9)
    assert general.bias.value == pytest.approx(0.0, abs=1e-12)
    # unpaired: independent inputs and targets
    mc, _ = pr.gradient_noise_monte_carlo(task, student, teacher, n=N_ORACLE, seed=2)
    assert _within(linear, mc), (linear, mc)
    # paired: ||g_i||^2 with sampled t_i minus the closed form at the same x_i has mean 0 (the
    # x-variance cancels, so this band is ~5x narrower than the unpaired one)
    x, y = task.sample(N_ORACLE, rng.generator(7, 0))
    p = np.exp(task.log_bcp(x))
    grads = pr.per_sample_gradients(student, teacher, x, y, p, rng.generator(7, 1), pr.theta_star(task, student))
    d = np.concatenate([(g**2).sum(1) for _, g in grads]) - pr.sigma2_per_input(task, student, teacher, x)
    assert abs(d.mean()) <= 4 * d.std(ddof=1) / math.sqrt(len(d)), d.mean()


@pytest.mark.slow
@pytest.mark.parametrize("case", SIGMA2, ids=case_ids(SIGMA2))
def test_closed_forms_equal_monte_carlo_heavy(case):
    task, student, teacher = _objects(case)
    cf = pr.sigma2_closed_form(task, student, teacher, n_mc=100_000, seed=3)
    mc, _ = pr.gradient_noise_monte_carlo(task, student, teacher, n=100_000, seed=4)
    assert _within(cf, mc), (cf, mc)


MLP = cases_with("mlpsigma2-")


@pytest.mark.parametrize("case", MLP, ids=case_ids(MLP))
def test_mlp_student_jacobian_route(case):
    task = synthetic.make_task(case.task)
    student = students.build_student(case.student, task, dtype=torch.float64)
    teacher = teachers.parse_teacher(case.teacher)
    general = pr.gradient_noise(task, student, teacher, n_mc=1000, seed=1, matrix=False)
    closed = pr.sigma2_closed_form(task, student, teacher, n_mc=1000, seed=1)
    assert closed.value == pytest.approx(general.sigma2.value, rel=1e-9)
    mc, _ = pr.gradient_noise_monte_carlo(task, student, teacher, n=3000, seed=2)
    assert _within(closed, mc), (closed, mc)


@pytest.mark.parametrize("gauge", ["pinned", "full"])
def test_second_moment_matrix_matches_monte_carlo(gauge):
    task = synthetic.make_task("triangle")
    student = students.Linear(task, gauge=gauge, dtype=torch.float64)
    teacher = teachers.parse_teacher("dirichlet:5")
    # on the same inputs, g g^T - G Cov(t|x) G^T (E3, E5) has mean 0 given x: compare every entry of
    # its sample mean with 4 of its own SEs (the x-variation cancels, only the target noise remains)
    x, y, p = pr.sample_inputs(task, 20_000, seed=2, key=1)
    theta = pr.theta_star(task, student)
    J = student.prob_jacobian(theta, torch.as_tensor(x)).numpy()  # [N, K, P]
    G = np.transpose(J, (0, 2, 1)) / p[:, None, :]  # [N, P, K], columns J_k / p_k
    M = G @ teacher.cov(p) @ np.transpose(G, (0, 2, 1))  # [N, P, P]
    g = np.concatenate([gr for _, gr in pr.per_sample_gradients(student, teacher, x, y, p, rng.generator(2, 9), theta)])
    d = g[:, :, None] * g[:, None, :] - M
    se = d.std(axis=0, ddof=1) / math.sqrt(len(d))
    assert np.all(np.abs(d.mean(axis=0)) <= 4 * se + 1e-15)
    # the general route's C is the same population matrix: agree with the per-input mean within 4 SE
    C = pr.gradient_noise(task, student, teacher, n_mc=20_000, seed=1).C
    se_M = M.std(axis=0, ddof=1) / math.sqrt(len(M))
    assert np.all(np.abs(C - M.mean(axis=0)) <= 4 * math.sqrt(2) * se_M + 1e-15)
    assert np.trace(C) == pytest.approx(pr.gradient_noise(task, student, teacher, n_mc=20_000, seed=1).sigma2.value)


@pytest.mark.parametrize("task_name", ["triangle", "paper"])
@pytest.mark.parametrize("gauge", ["pinned", "full"])
def test_fisher_equals_hessian(task_name, gauge):
    task = synthetic.make_task(task_name)
    student = students.Linear(task, gauge=gauge, dtype=torch.float64)
    C = pr.gradient_noise(task, student, teachers.OneHot(), n_mc=1000, seed=5).C
    H = constants.hessian_at_optimum(task, student, n_mc=1000, seed=5)
    H_student = constants.hessian_at_optimum(task, student, n_mc=1000, seed=5, method="student")
    H_fisher = constants.hessian_at_optimum(task, student, n_mc=1000, seed=5, method="fisher")
    scale = np.abs(H).max()
    # C_onehot = H holds sample by sample at a realizable optimum, so on shared inputs it is exact
    for other in (C, H_student, H_fisher):
        assert np.abs(other - H).max() <= 1e-10 * scale
    U, w = pr.hessian_factors(task, student, n_mc=1000, seed=5)
    assert np.abs(np.einsum("n,npk,nqk->pq", w, U, U) - H).max() <= 1e-10 * scale


def test_dirichlet_covariance_is_scaled_hessian():
    task = synthetic.make_task("triangle")
    student = students.Linear(task, dtype=torch.float64)
    H = constants.hessian_at_optimum(task, student, n_mc=1000, seed=5)
    for alpha in (0.5, 5.0, 50.0):
        C = pr.gradient_noise(task, student, teachers.Dirichlet(alpha), n_mc=1000, seed=5).C
        np.testing.assert_allclose(C, H / (1 + alpha), atol=1e-12)


@pytest.mark.parametrize("gauge", ["pinned", "full"])
def test_critical_noise_equalises_onehot_and_additive(gauge):
    task = synthetic.make_task("triangle")
    student = students.Linear(task, gauge=gauge, dtype=torch.float64)
    nu_c = pr.critical_noise(task, student, n_mc=N_MC, seed=1)
    onehot = pr.sigma2_closed_form(task, student, teachers.OneHot(), n_mc=N_MC, seed=1)
    additive = pr.sigma2_closed_form(task, student, teachers.Additive(nu_c.value), n_mc=N_MC, seed=1)
    assert additive.value == pytest.approx(onehot.value, rel=1e-12)
    jac = pr.critical_noise(task, student, n_mc=N_MC, seed=1, route="jacobian")
    assert jac.value == pytest.approx(nu_c.value, rel=1e-9)


def test_bcp_has_no_noise_and_biased_teacher_has_a_bias_term():
    task = synthetic.make_task("triangle")
    student = students.Linear(task, dtype=torch.float64)
    assert pr.sigma2_closed_form(task, student, teachers.BCP()).value == 0.0
    assert pr.gradient_noise(task, student, teachers.BCP(), n_mc=500).sigma2.value == pytest.approx(0.0, abs=1e-20)
    temp = teachers.Temperature(2.0)
    general = pr.gradient_noise(task, student, temp, n_mc=N_MC, seed=1, matrix=False)
    assert general.variance.value == 0.0 and general.bias.value > 0
    mc, _ = pr.gradient_noise_monte_carlo(task, student, temp, n=N_ORACLE, seed=2)
    assert _within(general.sigma2, mc)


def test_teacher_without_known_moments_closed_form_refuses_monte_carlo_works():
    task = synthetic.make_task("triangle")
    student = students.Linear(task, dtype=torch.float64)
    trained = FunctionTeacher(lambda x: task.log_bcp(x) / 2 - np.log(np.exp(task.log_bcp(x) / 2).sum(1, keepdims=True)),
                              name="tempered-reference", log=True)
    with pytest.raises(ValueError, match="no closed form"):
        pr.sigma2_closed_form(task, student, trained)
    with pytest.raises(ValueError, match="no closed form"):
        pr.sigma2_closed_form(task, student, teachers.Clipped(0.01))
    mc, _ = pr.gradient_noise_monte_carlo(task, student, trained, n=N_ORACLE, seed=2)
    general = pr.gradient_noise(task, student, trained, n_mc=N_MC, seed=1, matrix=False)  # input-dependent moments
    assert mc.value > 0 and _within(general.sigma2, mc)


def test_route_validation():
    task = synthetic.make_task("teacher-net")
    student = students.build_student("mlp:16:tanh", task, dtype=torch.float64)
    with pytest.raises(ValueError, match="route"):
        pr.sigma2_closed_form(task, student, teachers.OneHot(), route="linear")



def _all_teacher_functions(task, student, teacher, closed_form=True):
    """The result of every function of `predictions` that takes a teacher, on fixed seeds."""
    x, y = task.sample(300, rng.generator(3, 0))
    p = np.exp(task.log_bcp(x))
    general = pr.gradient_noise(task, student, teacher, n_mc=300, seed=1)
    mc, C_mc = pr.gradient_noise_monte_carlo(task, student, teacher, n=300, seed=2, matrix=True)
    grads = pr.per_sample_gradients(student, teacher, x, y, p, rng.generator(3, 1), pr.theta_star(task, student))
    out = {"sigma2": general.sigma2, "C": general.C, "mc": mc, "C_mc": C_mc, "grads": np.concatenate([g for _, g in grads]),
           "moments": pr.teacher_moments(teacher, theory.Nodes(x, p, np.full(len(x), 1 / len(x)), None, "test")), "sum_sq": pr.target_sum_sq(task, teacher, n_mc=300, seed=1)}
    if closed_form:
        out["closed"] = pr.sigma2_closed_form(task, student, teacher, n_mc=300, seed=1)
        out["per_input"] = pr.sigma2_per_input(task, student, teacher, x)
    return out


@pytest.mark.parametrize("spec", ["tangent:0.01", "dirichlet:5", "mc:4:onehot", "temperature:2"])
def test_spec_string_and_teacher_object_give_identical_results(spec):
    task = synthetic.make_task("triangle")
    student = students.Linear(task, dtype=torch.float64)
    closed = not spec.startswith("temperature")  # biased: no closed form, for the string as for the object
    from_spec = _all_teacher_functions(task, student, spec, closed)
    from_object = _all_teacher_functions(task, student, teachers.parse_teacher(spec), closed)
    assert from_spec.keys() == from_object.keys()
    for key, value in from_object.items():
        np.testing.assert_equal(from_spec[key], value, err_msg=key)
    with pytest.raises(ValueError, match="no closed form for teacher 'clipped:0.01'"):
        pr.sigma2_closed_form(task, student, "clipped:0.01")


def test_teacher_objects_pass_through_unchanged():
    task = synthetic.make_task("triangle")
    trained = FunctionTeacher(task.log_bcp, name="bcp-reference", log=True)
    law = teachers.Dirichlet(5.0)
    assert pr.as_teacher(trained) is trained and pr.as_teacher(law) is law
    assert isinstance(pr.as_teacher("dirichlet:5"), teachers.Dirichlet)
