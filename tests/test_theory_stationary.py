"""Sharp predictions (DESIGN 2.8): E17, E17' (Lyapunov), its next-order correction, momentum, E18, E19.

The matrix solvers are checked against slow, obvious oracles: dense Kronecker-product solves of
the same linear equations (P = 6 on triangle() keeps P^2 x P^2 systems tiny).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import synthetic
from bkd_theory import students, teachers
from bkd_theory.theory import constants, lyapunov, predictions as pr, stationary as st

N = 2048


def _setup(gauge="pinned", teacher="onehot", task_name="triangle"):
    task = synthetic.make_task(task_name)
    student = students.Linear(task, gauge=gauge, dtype=torch.float64)
    teacher = teachers.parse_teacher(teacher)
    H = constants.hessian_at_optimum(task, student, n_mc=N, seed=0)
    C = pr.gradient_noise(task, student, teacher, n_mc=N, seed=0).C
    Q = constants.range_basis(student.num_params, constants.null_basis(student))
    return task, student, teacher, H, C, Q


@pytest.mark.parametrize("gauge", ["pinned", "full"])
@pytest.mark.parametrize("teacher", ["onehot", "additive:0.01"])
def test_lyapunov_solution_and_trace_identity(gauge, teacher):
    _, _, _, H, C, Q = _setup(gauge, teacher)
    gamma, b = 0.05, 4
    S = st.lyapunov_covariance(H, C, gamma, b, Q=Q)
    assert st.lyapunov_residual(H, S, C, gamma, b, Q) < 1e-10
    # tr(H S) = gamma tr C / (2b), so tr(H S)/2 is E17's gamma sigma^2 / (4b)
    assert np.trace(H @ S) / 2 == pytest.approx(st.neighborhood_excess_risk(np.trace(C), gamma, b), rel=1e-10)


def test_onehot_lyapunov_is_half_gamma_identity():
    _, student, _, H, C, Q = _setup("full", "onehot")
    S = st.lyapunov_covariance(H, C, 0.1, 1, Q=Q)  # C = H gives S = (gamma/2) I on the range
    np.testing.assert_allclose(S, 0.05 * Q @ Q.T, atol=1e-12)


def _dense_second_order(H, U, w, b):
    """E[s^2 H_x kron H_x] / b + (1 - 1/b) H kron H, built explicitly `[P^2, P^2]` (w: node weight times E s^2)."""
    Hx = np.einsum("npk,nqk->npq", U, U)
    M = np.einsum("n,npq,nrs->prqs", w, Hx, Hx).reshape(H.size, H.size) / b
    return M + (1 - 1 / b) * np.kron(H, H)


@pytest.mark.parametrize("batch", [1, 3])
def test_corrected_covariance_matches_dense_oracle(batch):
    task, student, teacher, H, C, Q = _setup("pinned", "additive:0.01")
    U, wn = pr.hessian_factors(task, student, n_mc=512, seed=0)
    w = wn * pr.target_sum_sq(task, teacher, n_mc=512, seed=0)
    gamma = 0.3
    sol = st.corrected_covariance(H, C, U, gamma, batch, weights=w)
    P = H.shape[0]
    I = np.eye(P)
    A = np.kron(H, I) + np.kron(I, H) - gamma * _dense_second_order(H, U, w, batch)
    S = np.linalg.solve(A, gamma * C.reshape(-1) / batch).reshape(P, P)
    np.testing.assert_allclose(sol.S, S, rtol=1e-7, atol=1e-12)
    assert sol.residual < 1e-8 and sol.converged
    # mean-square threshold: 1 / spectral radius of L^{-1} M, with L = H (x) I + I (x) H
    L = np.kron(H, I) + np.kron(I, H)
    rho = np.abs(np.linalg.eigvals(np.linalg.solve(L, _dense_second_order(H, U, w, batch)))).max()
    assert sol.gamma_ms == pytest.approx(1 / rho, rel=1e-4)
    assert sol.dist2 > np.trace(st.lyapunov_covariance(H, C, gamma, batch))  # the correction adds


def test_corrected_covariance_full_gauge_and_small_gamma_limit():
    task, student, teacher, H, C, Q = _setup("full", "onehot")
    U, _ = pr.hessian_factors(task, student, n_mc=512, seed=0)
    gamma = 1e-4
    sol = st.corrected_covariance(H, C, U, gamma, Q=Q)
    lyap = st.lyapunov_covariance(H, C, gamma, Q=Q)
    assert sol.dist2 == pytest.approx(np.trace(lyap), rel=1e-3)  # O(gamma) relative correction
    N = constants.null_basis(student)
    assert np.abs(N.T @ sol.S).max() < 1e-12  # nothing on the gauge directions


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_heavy_ball_first_order(momentum):
    _, _, _, H, C, Q = _setup("pinned", "dirichlet:5")
    b = 2
    gamma = 1e-3
    S = st.heavy_ball_covariance(H, C, gamma, b, momentum, Q=Q)
    e17 = st.neighborhood_excess_risk(np.trace(C), gamma, b, momentum)
    # first-order rule gamma -> gamma / (1 - beta); relative error O(gamma L / (1 - beta))
    assert np.trace(H @ S) / 2 == pytest.approx(e17, rel=5 * gamma * np.linalg.eigvalsh(H)[-1] / (1 - momentum) + 1e-9)
    if momentum == 0.0:  # exact discrete equation: H S + S H - gamma H S H = gamma C / b
        np.testing.assert_allclose(H @ S + S @ H - gamma * H @ S @ H, gamma * C / b, atol=1e-14)


def test_finite_n_onehot_and_dirichlet():
    for gauge in ("pinned", "full"):
        task, student, _, H, C, Q = _setup(gauge, "onehot")
        rank = (task.num_classes - 1) * (task.dim + 1)
        _, risk = st.finite_n(H, C, 1000, Q=Q)
        assert risk == pytest.approx(rank / 2000, rel=1e-10)  # C = H: p / (2n), p = rank of H
        Cd = pr.gradient_noise(task, student, teachers.Dirichlet(5.0), n_mc=N, seed=0).C
        _, risk_d = st.finite_n(H, Cd, 1000, Q=Q)
        assert risk_d == pytest.approx(rank / (2000 * 6), rel=1e-10)


def test_lyapunov_exponent_sign_change():
    task, student, _, H, C, Q = _setup("pinned", "bcp")
    U, _ = pr.hessian_factors(task, student, n_mc=512, seed=0)
    gamma_ms = st.mean_square_threshold(H, U)
    ex = lyapunov.top_lyapunov_exponents(task, student, [0.5 * gamma_ms, 20 * gamma_ms], steps=1500, replicas=4)
    assert ex.exponents[0] < -4 * ex.se[0] and ex.exponents[1] > 4 * ex.se[1]
    thr = lyapunov.lyapunov_threshold(task, student, gamma_range=(0.2 * gamma_ms, 20 * gamma_ms), n_grid=6,
                                      steps=1500, replicas=4)
    # mean-square stability implies almost-sure stability: the Lyapunov threshold is not below gamma_ms
    assert thr.bracket[0] <= thr.gamma.value <= thr.bracket[1]
    assert thr.gamma.value >= 0.9 * gamma_ms


def test_lyapunov_threshold_reports_missing_sign_change():
    task, student, *_ = _setup("pinned", "bcp")
    with pytest.raises(ValueError, match="no sign change"):
        lyapunov.lyapunov_threshold(task, student, gamma_range=(1e-4, 1e-3), n_grid=3, steps=200, replicas=2)


def test_lyapunov_threshold_large_batch_tends_to_two_over_L():
    """With b -> inf the random product becomes (I - gamma H)^k, whose threshold is 2 / lambda_max(H)."""
    task, student, _, H, _, _ = _setup("pinned", "bcp")
    L = np.linalg.eigvalsh(H)[-1]
    thr = lyapunov.lyapunov_threshold(task, student, gamma_range=(0.5 / L, 8 / L), batch=256, n_grid=6, steps=800,
                                      replicas=4)
    # finite b shifts the threshold by O(1/b) and H is a 2048-point Monte Carlo estimate: allow 5 %
    assert thr.gamma.value == pytest.approx(2 / L, rel=0.05)
