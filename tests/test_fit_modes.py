"""Fitting modes, per-visit sampling (E24) and teacher quality in the paper's protocol (DESIGN 2.10)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import log_softmax

from bkd_theory import rng, sgd
from bkd_theory.claims import recipes
from bkd_theory.teachers import FunctionTeacher, fitbase, fitting, pervisit, quality, trained
from synthetic import GaussianMixture
from test_sgd import Trajectory, _path

SMALL = dict(widths=(8,), epochs=3, batch_size=32)
Z = 4.0
TASK = GaussianMixture.triangle()
#: a finite-set run configuration of the recipes with a trained teacher (tiny, for plumbing)
CFG = dict(task="triangle", standardize=False, student="linear", teacher="trained:mc_dropout", gamma=0.05, batch=2,
           steps=60, chains=3, seed=4, eval_every=20, regime="finite", n=40, teacher_n=80, teacher_epochs=2,
           members=2, passes=4, p_drop=0.2, teacher_seed=1, eval_n=200)


@pytest.fixture(scope="module")
def sample():
    return TASK.sample(60, rng.stream(0, "adhoc", 800))


def test_folds_partition_and_bad_counts():
    f = fitting.fold_of(10, 3)
    assert np.array_equal(np.bincount(f), [4, 3, 3])
    with pytest.raises(ValueError, match=r"^folds\b"):
        fitting.fold_of(10, 1)
    with pytest.raises(ValueError, match=r"^folds\b.*empty"):
        fitting.fold_of(2, 3)


def test_cross_fitting_never_uses_a_points_own_fold(sample):
    x, y = sample
    cross = fitting.fit_cross("deterministic", x, y, 3, num_classes=3, **SMALL)
    for j, inside in enumerate(cross.fitted_on):
        mine = np.flatnonzero(cross.owner == j)
        assert np.intersect1d(inside, mine).size == 0 and np.union1d(inside, mine).size == len(x)
    # the check above by construction, and by re-fitting: the targets of fold j are those of a
    # teacher fitted on the other folds only; the teacher fitted on all points gives other targets
    j, mine = 1, np.flatnonzero(cross.owner == 1)
    refit = trained.fit_teacher("deterministic", x[cross.owner != j], y[cross.owner != j], num_classes=3, **SMALL)
    np.testing.assert_array_equal(cross.predict_proba(x[mine]), refit.predict_proba(x[mine]))
    leaky = trained.fit_teacher("deterministic", x, y, num_classes=3, **SMALL)
    assert not np.allclose(cross.predict_proba(x[mine]), leaky.predict_proba(x[mine]), atol=1e-6)
    with pytest.raises(ValueError, match=r"^x\b"):
        cross.predict_proba(x[:2] + 1e-9)  # not training points: the table does not extrapolate


def test_in_sample_teachers_are_fitted_on_each_chains_training_set():
    cfg = {**CFG, "fit_mode": "in-sample"}
    table = recipes.trained_teacher(cfg, "mc_dropout")
    for r in range(3):
        x, y = TASK.sample(40, rng.chain_streams(4, r).data)  # the engine's training set of chain r
        rows = table.rows(x)
        assert (table.owner[rows] == r).all() and np.array_equal(table.fitted_on[r], rows)
        alone = trained.fit_teacher("mc_dropout", x, y, num_classes=3, epochs=2, seed=1, p_drop=0.2, passes=4)
        np.testing.assert_array_equal(table.predict_proba(x), alone.predict_proba(x))
    assert recipes.run(cfg).summary()["chains"] == 3  # the engine finds every training point in the table


def test_default_configuration_is_the_out_of_sample_fit():
    # no fit keys: the very teachers of `fitted` (the committed figures' protocol)
    assert recipes.trained_teacher(CFG, "mc_dropout") is recipes.fitted(CFG)["mc_dropout"]
    assert recipes.fit_config(CFG) == {k: CFG[k] for k in recipes.FIT_KEYS}
    oos = recipes.trained_teacher({**CFG, "fit_mode": "out-of-sample"}, "mc_dropout")
    xe, _ = TASK.sample(5, rng.stream(0, "adhoc", 801))
    np.testing.assert_array_equal(oos.predict_proba(xe), recipes.fitted(CFG)["mc_dropout"].predict_proba(xe))


@pytest.mark.parametrize("noise", ["fresh", "frozen"])
def test_per_visit_chain_alone_equals_chain_in_batch(noise):
    cfg = {**CFG, "fit_mode": "in-sample", "teacher_draws": 2}
    teacher = recipes.trained_teacher(cfg, "mc_dropout")
    kw = dict(task="triangle", student="linear", gamma=0.05, batch=2, steps=600, seed=4, regime="finite", n=40,
              noise=noise, init="perturbed", instruments=[Trajectory(100)])
    batch = sgd.run(teacher=teacher, chains=3, **kw)
    alone = sgd.run(teacher=teacher, chains=1, first_chain=2, **kw)
    np.testing.assert_array_equal(_path(alone)[:, 0], _path(batch)[:, 2])
    other = sgd.run(teacher=recipes.trained_teacher({**cfg, "teacher_draws": 3}, "mc_dropout"), chains=1,
                    first_chain=2, **kw)
    assert not np.array_equal(_path(other)[:, 0], _path(alone)[:, 0])


@pytest.fixture(scope="module")
def bayes(sample):
    x, y = sample
    return {k: trained.fit_teacher(k, x, y, num_classes=3, seed=2, **SMALL, **kw) for k, kw in
            [("mc_dropout", dict(p_drop=0.3, passes=4)), ("ensemble", dict(members=3)), ("laplace", {}), ("vi", {})]}


@pytest.mark.parametrize("kind", ["mc_dropout", "ensemble", "laplace", "vi"])
def test_per_visit_covariance_is_posterior_covariance_over_S(bayes, kind):
    """E24: Cov(t | x) = Cov_w(p~_w(x)) / S. 3000 visits of 3 fixed points, each a mean of S = 3 draws
    (one call: rows are independent draws); the moments from M = 4000 draws of their own."""
    S, V, M = 3, 3000, 4000
    teacher = pervisit.PerVisit(bayes[kind], S, moment_draws=M, seed=3)
    x = TASK.sample(3, rng.stream(0, "adhoc", 802))[0]
    p = TASK.bcp(x)
    xs, ps = np.tile(x, (V, 1)), np.tile(p, (V, 1))
    t = teacher.sample(ps, None, rng.stream(0, "adhoc", 803), x=xs).reshape(V, 3, 3)   # [V, N, K]
    c = t - t.mean(axis=0)
    cov_hat = np.einsum("vnk,vnl->nkl", c, c) / (V - 1)
    se = np.sqrt(np.einsum("vnk,vnl->nkl", c**2, c**2) / V - cov_hat**2) / math.sqrt(V)  # SE of a mean of products
    cov, mean = teacher.cov(p, x=x), teacher.mean(p, x=x)
    # + the moments' Monte Carlo error: the same SE formula at M draws, scaled by 1/S
    tol = Z * np.hypot(se, se * math.sqrt(V / M))
    assert (np.abs(cov_hat - cov) <= tol + 1e-15).all()
    assert (np.abs(t.mean(axis=0) - mean) <= Z * t.std(axis=0, ddof=1) * math.sqrt(1 / V + S / M) + 1e-15).all()
    diag = np.broadcast_to(np.eye(3, dtype=bool), cov.shape)
    assert (np.abs(cov_hat - S * cov) > tol)[diag].all()  # Cov_w without the 1/S is rejected


def test_per_visit_bad_input(bayes, sample):
    x, y = sample
    with pytest.raises(ValueError, match=r"^draws\b"):
        pervisit.PerVisit(bayes["vi"], 0)
    with pytest.raises(ValueError, match=r"^base\b"):
        pervisit.PerVisit(trained.fit_teacher("deterministic", x, y, **SMALL), 2)
    with pytest.raises(ValueError, match="num_classes"):
        pervisit.PerVisit(bayes["vi"], 2).sample(np.full((2, 4), 0.25), None, rng.stream(0, "adhoc", 1), x=x[:2])


@pytest.mark.parametrize("extra,name", [
    (dict(teacher="trained:bnn"), "kind"), (dict(fit_mode="cross-fitted", folds=1), "folds"),
    (dict(fit_mode="cross-fitted", folds=41), "folds"), (dict(fit_mode="in-sample", teacher_draws=0), "teacher_draws"),
    (dict(teacher="trained:vi", teacher_kwargs={"prior_sigma": 0.0}), "prior_sigma"),
    (dict(fit_mode="aside"), "fit_mode"), (dict(teacher_kwargs=[1]), "teacher_kwargs"),
    (dict(fit_mode="in-sample", regime="online"), "fit_mode"), (dict(teacher="trained:deterministic", teacher_draws=2),
                                                                 "teacher_draws")])
def test_bad_configurations_name_the_parameter(extra, name):
    cfg = {**CFG, **extra}
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        recipes.trained_teacher(cfg, recipes.trained_kind(cfg["teacher"]))


def test_teacher_of_another_task_is_refused(sample):
    x, y = sample
    t = trained.fit_teacher("deterministic", x, y, num_classes=3, **SMALL)
    wide = type("Task", (), {"num_classes": 4, "dim": 2})()
    deep = type("Task", (), {"num_classes": 3, "dim": 5})()
    with pytest.raises(ValueError, match=r"^teacher num_classes\b"):
        fitbase.check_task(t, wide)
    with pytest.raises(ValueError, match=r"^teacher dim\b"):
        fitbase.check_task(t, deep)
    assert fitbase.check_task(t, TASK) is t
    with pytest.raises(ValueError, match=r"^teacher (num_classes|dim) must equal the task's"):  # at build, before any step
        sgd.run(task="paper", student="linear", teacher=t, steps=1, chains=1)


# ---------------------------------------------------------------------------------------------
# Quality against the true p on the training points and on fresh points


def test_quality_of_the_exact_and_of_a_cold_teacher():
    x = TASK.sample(3000, rng.stream(0, "adhoc", 804))[0]
    log_p = TASK.log_bcp(x)
    exact = FunctionTeacher(TASK.log_bcp, name="bcp", log=True)
    r = quality.quality_at(exact, x, log_p)
    assert max(abs(r[m].value) for m in ("kl", "l2", "ece", "overconfidence", "over", "under")) <= 1e-12
    table = quality.reliability(exact, x, log_p, bins=5)
    assert table["count"].sum() == len(x) and np.nanmax(np.abs(table["gap"])) <= 1e-12
    cold = FunctionTeacher(lambda z: log_softmax(TASK.log_bcp(z) / 0.5, axis=1), name="cold", log=True)
    r = quality.quality_at(cold, x, log_p)
    assert r["overconfidence"].value > Z * r["overconfidence"].se and r["under"].value == 0.0
    hot = FunctionTeacher(lambda z: log_softmax(TASK.log_bcp(z) / 2.0, axis=1), name="hot", log=True)
    assert [quality.calibration_side(quality.quality_at(t, x, log_p)) for t in (exact, cold, hot)] == [
        "calibrated", "over-confident", "under-confident"]
    # a wrong reliability (confidence against itself) would show no gap; the true one shows it in every busy bin
    t = quality.reliability(cold, x, log_p, bins=5)
    busy = t["count"] >= 30
    assert (t["gap"][busy] > Z * t["gap_se"][busy]).all()


def test_fit_quality_on_training_and_fresh_points(sample):
    x, y = sample
    cross = fitting.fit_cross("deterministic", x, y, 3, num_classes=3, **SMALL)
    q = quality.fit_quality(cross, TASK, x, fresh_n=500, seed=1)
    assert set(q) == {"train", "fresh"} and q["train"].n == 60 and q["fresh"].n == 500
    # fresh points: the components' mean, point by point
    xf, _ = TASK.sample(500, rng.stream(1, "teacher.quality", 0))
    kl = np.mean([quality.pointwise_metrics(c, xf, TASK.log_bcp(xf))["kl"] for c in cross.components], axis=0)
    assert abs(q["fresh"]["kl"].value - kl.mean()) <= 1e-12
    seeds = quality.over_seeds([q["train"], q["fresh"]])
    assert abs(seeds["kl"].value - 0.5 * (q["train"]["kl"].value + q["fresh"]["kl"].value)) <= 1e-12


def test_per_training_set_quality_and_teacher_widths():
    cfg = {**CFG, "teacher": "trained:deterministic", "fit_mode": "cross-fitted", "folds": 2, "teacher_widths": [6, 5]}
    table = recipes.trained_teacher(cfg, "deterministic")
    assert len(table.components) == 6 and all(c.config.widths == (6, 5) for c in table.components)
    reports = quality.per_training_set(table, TASK, fresh_n=300, seed=2)
    assert len(reports) == 3 and all(r["train"].n == 40 and r["fresh"].n == 300 for r in reports)
    x0, _ = TASK.sample(40, rng.chain_streams(4, 0).data)
    ref = quality.quality_at(table, x0, TASK.log_bcp(x0))
    assert reports[0]["train"]["kl"].value == ref["kl"].value
    seeds = quality.over_seeds([r["train"] for r in reports])
    assert seeds["kl"].se > 0
