"""synthetic: statistical and numerical checks of the BCPs, H(Y|X), Bayes accuracy and the Hessian.

Tolerances come from standard errors: |estimate - truth| <= 4 SE (a 4-sigma band; with ~20 such
comparisons a false alarm has probability ~1e-3, and every seed is fixed).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy.special import log_softmax

import synthetic
from synthetic import GaussianMixture, HeteroscedasticGaussian

ALL = [(name, std) for name in synthetic.task_names() for std in (False, True)]
ALL_IDS = [f"{n}{'-std' if s else ''}" for n, s in ALL]
LOW_DIM = [(name, std) for name in ("triangle", "hetero") for std in (False, True)]
LOW_IDS = [f"{n}{'-std' if s else ''}" for n, s in LOW_DIM]


# ---------------------------------------------------------------- BCPs vs the generative model
# (the light size runs for every registered task in tests/contracts/test_tasks.py)
def _check_calibration(name, std, n):
    task = synthetic.make_task(name, standardize=std)
    report = task.check_bcp(n=n, rng=np.random.default_rng(11))
    # in each (class, bin) cell z ~ N(0, 1) if p(x) is the law of y | x
    assert report["cells"] >= task.num_classes * 3
    assert report["max_abs_z"] <= 4.0, report


@pytest.mark.slow
@pytest.mark.parametrize(("name", "std"), ALL, ids=ALL_IDS)
def test_bcp_matches_generative_model_heavy(name, std):
    _check_calibration(name, std, 400_000)


def test_calibration_detects_wrong_variance():
    """Power check: BCPs computed with s^2 = 1.5 instead of 1 fail the same test."""
    task = GaussianMixture.triangle()
    wrong = GaussianMixture(task.means, 1.5)
    x, y = task.sample(20_000, np.random.default_rng(11))
    assert synthetic.bcp_calibration(wrong.bcp(x), y)["max_abs_z"] > 4.0


# ---------------------------------------------------------------- quadrature vs Monte Carlo
def _agree(a, b):
    # both estimates are independent; SE of the difference; quadrature se is its numerical error
    return abs(a.value - b.value) <= 4.0 * np.hypot(a.se, b.se)


@pytest.mark.parametrize(("name", "std"), LOW_DIM, ids=LOW_IDS)
@pytest.mark.parametrize("n", [20_000, pytest.param(1_000_000, marks=pytest.mark.slow)])
def test_quadrature_matches_monte_carlo(name, std, n):
    task = synthetic.make_task(name, standardize=std)
    for stat in (task.conditional_entropy, task.bayes_accuracy):
        quad, mc = stat(method="quadrature"), stat(method="monte-carlo", n=n, seed=3)
        assert quad.method.startswith("quadrature") and mc.method.startswith("monte carlo")
        assert quad.se < 1e-6
        assert _agree(quad, mc), (stat.__name__, quad, mc)


def _mixture_oracle(task, f):
    """Slow, obvious: integrate f(x) * sum_k pi_k N(x; mu_k, v_k) over the real line with scipy,
    splitting at the decision boundaries (found on a grid, refined by brentq) where f may kink."""
    pi, mu, v = task.class_gaussians()
    grid = np.linspace(-30, 30, 60_001)
    k = np.argmax(task.log_bcp(grid[:, None]), axis=1)
    cuts = []
    for i in np.flatnonzero(k[1:] != k[:-1]):
        a, b = k[i], k[i + 1]
        gap = lambda t: np.diff(task.log_bcp(np.array([[t]]))[0, [a, b]])[0]  # noqa: E731
        cuts.append(optimize.brentq(gap, grid[i], grid[i + 1], xtol=1e-15))

    def integrand(t):
        dens = np.sum(pi * np.exp(-0.5 * (t - mu[:, 0]) ** 2 / v[:, 0]) / np.sqrt(2 * np.pi * v[:, 0]))
        return dens * f(np.array([[t]]))[0]

    points = sorted([*mu[:, 0], *cuts])
    return integrate.quad(integrand, -30, 30, points=points, limit=1000, epsabs=1e-14, epsrel=1e-13)[0]


@pytest.mark.parametrize("task", [
    GaussianMixture([[-1.0], [0.5], [2.0]], 0.7, priors=[0.5, 0.3, 0.2]),
    HeteroscedasticGaussian([[-1.0], [0.5]], [0.3, 2.0], priors=[0.4, 0.6]),
], ids=["mixture-1d", "hetero-1d"])
def test_quadrature_matches_scipy_oracle_1d(task):
    ent = _mixture_oracle(task, lambda x: -np.sum(task.bcp(x) * task.log_bcp(x), axis=1))
    acc = _mixture_oracle(task, lambda x: task.bcp(x).max(axis=1))
    h, a = task.conditional_entropy(), task.bayes_accuracy()
    # Gauss-Hermite: the reported error estimate (change from half the nodes) must cover the true error
    assert abs(h.value - ent) <= max(h.se, 1e-12) and h.se < 1e-5
    assert abs(a.value - acc) < 1e-10  # exact between the decision boundaries


def test_triangle_accuracy_matches_polar_oracle():
    """By symmetry the accuracy is P(x in the wedge |angle| < pi/3) for x ~ N(mu_0, I), mu_0 = (1.5, 0)."""
    def dens(r, theta):
        return r * np.exp(-0.5 * ((r * np.cos(theta) - 1.5) ** 2 + (r * np.sin(theta)) ** 2)) / (2 * np.pi)

    oracle = integrate.dblquad(dens, -np.pi / 3, np.pi / 3, 0, np.inf, epsabs=1e-12, epsrel=1e-12)[0]
    for task in (GaussianMixture.triangle(), synthetic.standardize(GaussianMixture.triangle())):
        assert abs(task.bayes_accuracy().value - oracle) < 1e-9


def test_span_rule_in_high_dimension_and_monte_carlo_elsewhere():
    paper = synthetic.make_task("paper")
    est = paper.conditional_entropy()
    assert est.method.startswith("Gauss-Hermite on the span") and est.se < 1e-5
    mc = paper.conditional_entropy(method="monte-carlo", n=200_000, seed=3)
    assert abs(est.value - mc.value) <= 4 * np.hypot(est.se, mc.se)  # quadrature vs an independent Monte Carlo
    acc, acc_mc = paper.bayes_accuracy(), paper.bayes_accuracy(method="monte-carlo", n=200_000, seed=3)
    assert acc.method.startswith("multivariate normal orthant") and abs(acc.value - acc_mc.value) <= 4 * np.hypot(acc.se, acc_mc.se)
    with pytest.raises(ValueError, match="quadrature"):
        paper.bayes_accuracy(method="quadrature")
    net = synthetic.make_task("teacher-net").conditional_entropy(n=2000)
    assert net.method.startswith("monte carlo") and net.se > 0


# ---------------------------------------------------------------- population moments (standardisation)
@pytest.mark.parametrize("name", ["paper", "triangle", "hetero"])
def test_population_moments_match_samples(name):
    task = synthetic.make_task(name)
    m, s = task.population_moments()
    x, _ = task.sample(20_000, np.random.default_rng(5))
    n = len(x)
    z_mean = (x.mean(0) - m) / (x.std(0, ddof=1) / np.sqrt(n))
    sq = (x - m) ** 2  # E (x - m)^2 = s^2 with m exact; SE from the samples
    z_var = (sq.mean(0) - s**2) / (sq.std(0, ddof=1) / np.sqrt(n))
    assert np.all(np.abs(z_mean) <= 4.0) and np.all(np.abs(z_var) <= 4.0), (z_mean, z_var)


# ---------------------------------------------------------------- Hessian at theta*
def _hessian_loop(task, x, kind):
    """Slow, obvious: mean over samples of kron(diag p - p p^T, xt xt^T)."""
    xt, p = synthetic.augmented(x, kind), task.bcp(x)
    return np.mean([np.kron(np.diag(pi) - np.outer(pi, pi), np.outer(t, t)) for pi, t in zip(p, xt)], axis=0)


def _hessian(task, gauge, kind, n, seed):
    import torch

    from bkd_theory.students import Linear
    from bkd_theory.theory import constants

    return constants.hessian_at_optimum(task, Linear(task, gauge=gauge, features=kind, dtype=torch.float64),
                                        n_mc=n, seed=seed, method="linear")


@pytest.mark.parametrize(("name", "kind"), [("triangle", "linear"), ("hetero", "quadratic"), ("paper", "linear")])
def test_linear_hessian_matches_loop(name, kind):
    from bkd_theory.theory.predictions import sample_inputs

    task = synthetic.make_task(name)
    x, _, _ = sample_inputs(task, 64, 2)
    ref = _hessian_loop(task, x, kind)
    np.testing.assert_allclose(_hessian(task, "full", kind, 64, 2), ref, atol=1e-12)
    G = ref.shape[0] // task.num_classes
    np.testing.assert_allclose(_hessian(task, "pinned", kind, 64, 2), ref[:-G, :-G], atol=1e-12)


def test_linear_hessian_is_the_risk_curvature():
    """H equals the finite-difference Hessian of the empirical risk mean CE(p(x), q_W(x)) at W* (pinned)."""
    from bkd_theory.students import fix_gauge
    from bkd_theory.theory.predictions import sample_inputs

    task = GaussianMixture.triangle()
    x, _, _ = sample_inputs(task, 200, 4)
    H = _hessian(task, "pinned", "linear", 200, 4)
    xt, p, w0 = synthetic.augmented(x), task.bcp(x), fix_gauge(task.logit_weights("linear"), "pinned").reshape(-1)

    def risk(w):
        logits = np.concatenate([xt @ w.reshape(2, 3).T, np.zeros((len(x), 1))], axis=1)
        return -np.mean(np.sum(p * log_softmax(logits, axis=1), axis=1))

    h, E = 1e-4, np.eye(len(w0))
    fd = np.array([[(risk(w0 + h * (E[i] + E[j])) - risk(w0 + h * (E[i] - E[j])) - risk(w0 - h * (E[i] - E[j]))
                     + risk(w0 - h * (E[i] + E[j]))) / (4 * h * h) for j in range(6)] for i in range(6)])
    np.testing.assert_allclose(H, fd, atol=1e-6)


def test_hessian_gauge_structure():
    from bkd_theory.theory import constants

    task = GaussianMixture.triangle()
    H = _hessian(task, "full", "linear", 5000, 0)
    ev = np.linalg.eigvalsh(H)
    assert np.sum(ev < 1e-12 * ev.max()) == 3  # null space 1_K kron R^{F+1}, F+1 = 3
    assert np.all(np.linalg.eigvalsh(_hessian(task, "pinned", "linear", 5000, 0)) > 0)
    assert np.isclose(constants.curvature(H).mu, np.sort(ev)[3])


# ---------------------------------------------------------------- teacher network
def test_with_entropy_hits_target():
    task = synthetic.make_task("teacher-net").with_entropy(0.3, n=50_000, seed=0)
    assert abs(task.conditional_entropy(method="monte-carlo", n=50_000, seed=0).value - 0.3) < 1e-9
    fresh = task.conditional_entropy(method="monte-carlo", n=20_000, seed=9)
    # the solve used a finite sample too: its error is about the SE at n = 50_000
    assert abs(fresh.value - 0.3) <= 4.0 * fresh.se * np.sqrt(1 + 20_000 / 50_000)
