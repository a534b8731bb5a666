"""E20-E22 in `theory.distillation` against independent computations (DESIGN 2.10).

Quadrature on `triangle` is exact to ~1e-10 relative, so comparisons with other quadrature-based
routes use rel 1e-9; Monte Carlo comparisons use 4 combined SE (seeds fixed).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import synthetic
from bkd_theory import rng, students, theory
from bkd_theory.theory import distillation as D
from bkd_theory.theory.integrate import monte_carlo, quadrature


@pytest.fixture(scope="module")
def setup():
    task = synthetic.make_task("triangle")
    student = students.Linear(task, gauge="pinned", dtype=torch.float64)
    return task, student, quadrature(task).nodes


@pytest.mark.parametrize("base", ["additive:0.02", "dirichlet:1", "mixture:0.5:dirichlet:1"])
def test_sigma2_is_quadratic_in_lam_with_the_cross_term(setup, base):
    """sigma^2(lam) from three values of lam equals the general route on mixture:lam:base at other
    lam (the last base reads y, so c != 0; dropping c would miss by 20-45 %)."""
    task, student, nodes = setup
    kd = D.kd_noise(task, student, base, nodes)
    for lam in (0.2, 0.7):
        pred = theory.predict(task, student, f"mixture:{lam}:{base}", gamma=0.01, correction=False)
        assert kd.sigma2(lam) == pytest.approx(pred.sigma2.value, rel=1e-9)
    assert (abs(kd.c) > 1e-3 * kd.a) == base.startswith("mixture")  # c = 0 up to rounding when t_T ignores y


def test_lambda_star_minimises_the_mixture_noise(setup):
    """For an unbiased teacher independent of y, lam*_var = a / (a + b) (E20), the minimiser of the
    general-route sigma^2 on a fine lam grid (grid step 1e-3)."""
    task, student, nodes = setup
    kd = D.kd_noise(task, student, "additive:0.02", nodes)
    assert kd.c == pytest.approx(0.0, abs=1e-14) and kd.B == pytest.approx(0.0, abs=1e-14)
    assert kd.lambda_var == pytest.approx(kd.a / (kd.a + kd.b), rel=1e-12)
    grid = np.linspace(0, 1, 1001)
    best = grid[np.argmin([kd.sigma2(g) for g in grid])]
    assert abs(best - kd.lambda_var) <= 1e-3
    assert kd.lambda_star(0.05) == pytest.approx(kd.lambda_var)  # no bias: lam*_gamma = lam*_var
    assert kd.a_h == pytest.approx(6.0, rel=1e-9)  # one-hot: tr H^+ H = rank H = (K - 1)(d + 1)


def test_bias_vector_is_minus_the_population_gradient_at_theta_star(setup):
    """m = E G (tbar - p) equals -grad F_T(theta*) with the teacher's mean targets, estimated on 2^17
    fresh inputs (4 SE per coordinate); B = m^T H^+ m > 0 for the biased temperature teacher."""
    task, student, nodes = setup
    kd = D.kd_noise(task, student, "temperature:2", nodes)
    x, y = task.sample(2**17, rng.generator(7, 1))
    tbar = theory.predictions.as_teacher("temperature:2").mean(task.bcp(x), x=x)
    star = student.optimum(task)[None]
    g = student.per_sample_grads(star, torch.from_numpy(x)[None], torch.from_numpy(tbar)[None])[0].numpy()
    est, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(len(g))
    assert np.all(np.abs(est + kd.m) <= 4 * se + 1e-12), (est, -kd.m, se)
    assert kd.B > 0.1 and 0 < kd.lambda_star(0.05) < 0.1


def test_preconditioned_and_adam_neighborhoods(setup):
    """E21 with P = I is E17 (gamma tr C / 4b); P = 2 I doubles it; Adam with eps = 0 is
    (gamma / 4) sum_i sqrt(C_ii / b), and eps > 0 only lowers it."""
    task, student, _ = setup
    pred = theory.predict(task, student, "onehot", gamma=0.05, correction=False)
    C, P = pred.C, np.eye(len(pred.C))
    assert D.preconditioned_neighborhood(C, P, 0.05) == pytest.approx(pred.neighborhood_excess_risk.value, rel=1e-12)
    assert D.preconditioned_neighborhood(C, 2 * P, 0.05, batch=4) == pytest.approx(
        pred.neighborhood_excess_risk.value / 2, rel=1e-12)
    adam0 = D.adam_neighborhood(C, 0.05, batch=2, eps=0.0)
    assert adam0 == pytest.approx(0.05 / 4 * np.sum(np.sqrt(np.diag(C) / 2)), rel=1e-12)
    assert D.adam_neighborhood(C, 0.05, batch=2, eps=1e-2) < adam0


def test_temperature_floor(setup):
    """E22 (b): zero at tau = 1, positive otherwise, and equal to a Monte Carlo estimate of
    E_x KL(p || softmax(log p / tau)) within 4 SE."""
    task, _, nodes = setup
    assert D.temperature_floor(task, 1.0, nodes).value == pytest.approx(0.0, abs=1e-14)
    exact = D.temperature_floor(task, 2.0, nodes)
    mc = D.temperature_floor(task, 2.0, monte_carlo(task, 2**17, seed=3).nodes)
    assert abs(exact.value - mc.value) <= 4 * mc.se and exact.value > 0.01
    with pytest.raises(ValueError, match="tau"):
        D.temperature_floor(task, 0.0, nodes)


def test_adam_prediction_is_e21_with_its_covariance(setup):
    """`predict(optimizer="adam")`: E[F - F*] = adam_neighborhood(C) and, for onehot labels (C = H),
    P H S + S H P = gamma P H P has the closed form S = gamma P / 2 (b = 1), so tr S = gamma sum_i
    P_ii / 2; E17' (S = gamma I / 2, the SGD formula) would miss it by > 50 %."""
    task, student, _ = setup
    sgd = theory.predict(task, student, "onehot", gamma=0.01, correction=False)
    adam = theory.predict(task, student, "onehot", gamma=0.01, optimizer="adam", eps=1e-8)
    P = D.adam_preconditioner(sgd.C, 1, 1e-8)
    assert adam.neighborhood_excess_risk.value == pytest.approx(D.adam_neighborhood(sgd.C, 0.01, 1, 1e-8), rel=1e-9)
    assert adam.neighborhood_dist2.value == pytest.approx(0.01 * P.sum() / 2, rel=1e-8)
    assert abs(sgd.neighborhood_dist2.value / adam.neighborhood_dist2.value - 1) > 0.5
    assert adam.config["optimizer"] == "adam" and "neighborhood_excess_risk_corrected" not in adam.values


def test_preconditioned_covariance_solves_its_equation():
    """P H S + S H P = gamma P C P / b for a random SPD H, C and diagonal P (relative residual
    < 1e-10), and P = 1 gives E17' (`stationary.lyapunov_covariance`)."""
    from bkd_theory.theory import stationary

    g = np.random.default_rng(0)
    A, B = g.standard_normal((2, 5, 5))
    H, C, P = A @ A.T + np.eye(5), B @ B.T, g.uniform(0.5, 2.0, 5)
    S = D.preconditioned_covariance(H, C, P, 0.1, batch=2)
    Pm = np.diag(P)
    lhs, rhs = Pm @ H @ S + S @ H @ Pm, 0.1 * Pm @ C @ Pm / 2
    assert np.linalg.norm(lhs - rhs) <= 1e-10 * np.linalg.norm(rhs)
    np.testing.assert_allclose(D.preconditioned_covariance(H, C, np.ones(5), 0.1), stationary.lyapunov_covariance(H, C, 0.1),
                               rtol=1e-10, atol=1e-14)


def test_predict_reports_the_e20_rows(setup):
    """`predict(..., lam=)` reports E20 from `kd_noise` of the base teacher; a mixture spec at lam = 1
    is split into the same base and weight; lambda_star_n only with n; the temperature floor is E22 (b)."""
    task, student, nodes = setup
    kd = D.kd_noise(task, student, "additive:0.02", nodes)
    p = theory.predict(task, student, "additive:0.02", gamma=0.05, lam=0.5, n=1000, correction=False)
    q = theory.predict(task, student, "mixture:0.5:additive:0.02", gamma=0.05, correction=False)
    assert p.teacher == q.teacher == "mixture:0.5:additive:0.02"
    for key, want in (("kd_sigma2", kd.sigma2(0.5)), ("lambda_star", kd.lambda_star(0.05)), ("kd_bias_B", kd.B),
                      ("lambda_star_n", kd.lambda_star_n(1000)), ("kd_finite_n_excess_risk", kd.finite_n(0.5, 1000))):
        assert p.values[key].value == pytest.approx(want, rel=1e-9, abs=1e-15), key
    assert q.lambda_star.value == pytest.approx(p.lambda_star.value, rel=1e-12) and "lambda_star_n" not in q.values
    assert p.kd_sigma2.value == pytest.approx(p.sigma2.value, rel=1e-9)  # unbiased: the noise is all of sigma^2
    t = theory.predict(task, student, "temperature:2", gamma=0.05, correction=False)
    assert t.excess_risk_floor.value == pytest.approx(D.temperature_floor(task, 2.0, nodes).value, rel=1e-12)


@pytest.mark.parametrize("bad, name", [
    (dict(lam=1.5), "lam must be in \\[0, 1\\]"), (dict(lam=-0.1), "lam"), (dict(optimizer="rms"), "optimizer"),
    (dict(optimizer="adam", beta1=1.0), "beta1 must be in \\[0, 1\\)"), (dict(optimizer="adam", beta2=-0.1), "beta2"),
    (dict(optimizer="adam", eps=0.0), "eps must be > 0"), (dict(optimizer="adam", momentum=0.9), "momentum"),
])
def test_predict_refuses_bad_optimizer_and_lam(setup, bad, name):
    task, student, _ = setup
    with pytest.raises(ValueError, match=name):
        theory.predict(task, student, "onehot", gamma=0.01, **bad)


def test_kd_exact_bias_against_e20_and_the_temperature_floor(setup):
    """`kd_exact`: for an unbiased teacher, no bias and E20's traces (rel 1e-9); for temperature:1.2 at
    lam = 1 (realizable by theta*/tau) the bias is the E22 (b) floor exactly, which E20's lam^2 B / 2
    overestimates by > 25 % (the expansion in the bias is only second order)."""
    task, student, nodes = setup
    kd = D.kd_noise(task, student, "additive:0.02", nodes)
    e = D.kd_exact(task, student, "additive:0.02", 0.3, nodes)
    assert abs(e.bias) < 1e-14 and e.trace_C == pytest.approx(kd.sigma2(0.3), rel=1e-9)
    assert e.trace_HC == pytest.approx(2 * kd.finite_n(0.3, 1), rel=1e-9)
    t = D.kd_exact(task, student, "temperature:1.2", 1.0, nodes)
    assert t.bias == pytest.approx(D.temperature_floor(task, 1.2, nodes).value, rel=1e-9)
    assert D.kd_noise(task, student, "temperature:1.2", nodes).B / 2 > 1.25 * t.bias
