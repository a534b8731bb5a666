"""Target laws and noise modes (DESIGN 2.2; moments feed E4, E5, E8, E9).

Statistical checks compare sample moments of t given a fixed p with `mean(p)` and `cov(p)`:
|est - exact| <= 4 SE, the SE estimated from the same samples (STYLE 4).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bkd_theory import teachers as T
from bkd_theory.rng import generator
from bkd_theory.teachers import TargetSource

from moments import DETERMINISTIC, PS, P3, P5, STOCHASTIC, check_moments  # noqa: F401


@pytest.mark.parametrize("pname", PS)
@pytest.mark.parametrize("spec", STOCHASTIC)
def test_sample_moments_match_mean_and_cov(spec, pname):
    # 4 SE per entry: a false alarm needs a > 4-sigma deviation (fixed seeds make it deterministic)
    assert check_moments(spec, PS[pname], n=10_000) <= 4.0


@pytest.mark.slow
@pytest.mark.parametrize("pname", PS)
@pytest.mark.parametrize("spec", STOCHASTIC)
def test_sample_moments_match_mean_and_cov_heavy(spec, pname):
    assert check_moments(spec, PS[pname], n=200_000, seed=1) <= 4.0


@pytest.mark.parametrize("spec", DETERMINISTIC)
def test_deterministic_teachers_have_zero_cov(spec):
    teacher = T.parse_teacher(spec)
    p = np.stack([P3, [0.2, 0.8, 0.0]])
    assert not teacher.stochastic
    np.testing.assert_allclose(teacher.sample(p, np.array([0, 1]), None), teacher.mean(p), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(teacher.cov(p), 0.0)


def test_closed_forms():
    p = np.stack([P3, [0.2, 0.8, 0.0]])
    c_y = T.OneHot().cov(p)
    np.testing.assert_allclose(c_y[0], np.diag(P3) - np.outer(P3, P3), atol=1e-15)
    np.testing.assert_allclose(T.Dirichlet(5).cov(p), c_y / 6, atol=1e-15)  # E8
    np.testing.assert_allclose(T.Smoothing(0.2).cov(p), 0.64 * c_y, atol=1e-15)
    np.testing.assert_allclose(T.Mixture(0.3, "onehot").cov(p), c_y, atol=1e-15)  # t = e_y exactly
    np.testing.assert_allclose(T.Mixture(0.3, "bcp").cov(p), 0.49 * c_y, atol=1e-15)
    np.testing.assert_allclose(T.AdditiveTangent(0.1).cov(p)[1], 0.1 * (np.eye(3) - 1 / 3), atol=1e-15)
    np.testing.assert_allclose(T.Temperature(2).mean(P3), np.sqrt(P3) / np.sqrt(P3).sum(), atol=1e-15)
    np.testing.assert_allclose(T.Temperature(2).mean([0.5, 0.5, 0.0]), [0.5, 0.5, 0.0], atol=1e-15)


@pytest.mark.parametrize("S", [1, 4, 16])
def test_mc_dirichlet_cov_is_base_over_S(S):
    # E9: the exact covariance is Cov_dirichlet / S, and samples agree with it within 4 SE
    mc, base = T.MC(S, T.Dirichlet(5)), T.Dirichlet(5)
    np.testing.assert_allclose(mc.cov(P5), base.cov(P5) / S, rtol=1e-14, atol=0)
    assert check_moments(f"mc:{S}:dirichlet:5", P3, n=10_000, seed=S) <= 4.0


def test_dirichlet_tends_to_onehot_as_alpha_to_zero():
    n, p = 10_000, P3
    rng = generator(1, 0)
    t = T.Dirichlet(1e-6).sample(np.tile(p, (n, 1)), None, rng)
    # P(some entry in (delta, 1 - delta)) ~ 2 alpha log(1/delta) ~ 3e-5 per row for delta = 1e-6
    assert np.mean(t.max(axis=1) > 1 - 1e-6) >= 0.999
    freq = np.bincount(t.argmax(axis=1), minlength=3) / n
    assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / n))  # argmax ~ Cat(p), binomial SE


def test_dirichlet_tends_to_bcp_as_alpha_to_infinity():
    n, p, alpha = 10_000, P5, 1e6
    t = T.Dirichlet(alpha).sample(np.tile(p, (n, 1)), None, generator(1, 1))
    sq = ((t - p) ** 2).sum(axis=1)  # E||t - p||^2 = (1 - ||p||^2) / (1 + alpha)
    exact = (1 - p @ p) / (1 + alpha)
    assert abs(sq.mean() - exact) <= 4 * sq.std(ddof=1) / np.sqrt(n)
    t = T.Dirichlet(1e14).sample(np.tile(p, (100, 1)), None, generator(1, 2))
    assert np.abs(t - p).max() < 1e-5


@pytest.mark.parametrize("alpha,p", [
    (1e-40, [0.5, 0.3, 0.2]),  # every shape ~1e-41
    (1.0, [0.6, 0.4 - 1e-40, 1e-40]),  # one shape 1e-40 beside ordinary ones
    (1e-300, [0.5, 0.3, 0.2]),  # log(U)/a overflows: the one-hot fallback
    (2.0, [0.7, 0.3, 0.0]),  # an exact zero
])
def test_dirichlet_tiny_shapes_stay_on_the_simplex(alpha, p):
    n, p = 5_000, np.asarray(p)
    t = T.Dirichlet(alpha).sample(np.tile(p, (n, 1)), None, generator(2, int(-np.log10(alpha))))
    assert np.all(np.isfinite(t)) and np.all((t >= 0) & (t <= 1))
    np.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    assert np.all(t[:, p == 0] == 0)
    if alpha < 1e-30:  # the law is one-hot and the hit class ~ Cat(p)
        assert np.all(t.max(axis=1) == 1.0)
        freq = np.bincount(t.argmax(axis=1), minlength=3) / n
        assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / n))


def test_clipped_is_biased_and_its_bias_is_measured():
    p, n = np.array([0.6, 0.39, 0.01]), 10_000
    teacher = T.Clipped(0.01)
    assert not teacher.unbiased and not teacher.moments_exact
    t = teacher.sample(np.tile(p, (n, 1)), None, generator(3, 0))
    z_bias = np.abs(t.mean(0) - p) / (t.std(0, ddof=1) / np.sqrt(n))
    assert z_bias.max() > 4  # measured bias, beyond 4 SE
    se_mean, se_cov = teacher.moment_errors(p)
    assert se_mean.max() < 1e-4 and se_cov.max() < 1e-4
    assert np.abs(teacher.mean(p) - p).max() > 100 * se_mean.max()  # numerical bias far above its error
    assert T.Clipped(0).unbiased and T.Clipped(0).moments_exact


def test_clipped_redraws_all_zero_rows():
    # nu large: a row clips to all zeros with probability prod Phi(-p_k / sigma) ~ 0.1
    t = T.Clipped(100.0).sample(np.tile(P3, (2_000, 1)), None, generator(3, 1))
    assert np.all(np.isfinite(t)) and np.allclose(t.sum(axis=1), 1.0) and np.all(t >= 0)


def _source(mode: str, seed: int = 0, spec: str = "dirichlet:2"):
    rng = generator(4, 0)
    p = rng.dirichlet(np.ones(3), size=20)
    y = np.array([rng.choice(3, p=row) for row in p])
    return TargetSource(spec, p, y, mode, generator(4, seed)), p, y


def test_frozen_targets_repeat_every_epoch_and_are_reproducible():
    src, _, _ = _source("frozen")
    idx = np.arange(src.n)
    epochs = [src(generator(5, e).permutation(idx), generator(6, e)) for e in range(3)]
    perms = [generator(5, e).permutation(idx) for e in range(3)]
    for e in range(3):
        np.testing.assert_array_equal(epochs[e][np.argsort(perms[e])], src.table)
    np.testing.assert_array_equal(_source("frozen")[0].table, src.table)  # same seed, same table
    assert not np.array_equal(_source("frozen", seed=1)[0].table, src.table)


def test_fresh_targets_differ_between_visits():
    src, _, _ = _source("fresh")
    rng = generator(7, 0)
    idx = np.arange(src.n).reshape(4, 5)
    a, b = src(idx, rng), src(idx, rng)
    assert a.shape == (4, 5, 3) and src(np.array([]), rng).shape == (0, 3)
    assert np.all(np.any(a != b, axis=-1))


def test_labels_are_frozen_in_both_modes():
    for mode in ("fresh", "frozen"):
        src, _, y = _source(mode, spec="onehot")
        np.testing.assert_array_equal(src(np.arange(src.n), generator(8, 0)), np.eye(3)[y])


def test_online_mode_is_rejected_for_a_finite_set():
    with pytest.raises(ValueError, match="online regime"):
        _source("online")


BAD = [
    (lambda: T.Dirichlet(0), "alpha"), (lambda: T.Dirichlet(-1), "alpha"), (lambda: T.Dirichlet(np.inf), "alpha"),
    (lambda: T.Additive(-0.1), "nu"), (lambda: T.AdditiveTangent(-1), "nu"), (lambda: T.Clipped(-1), "nu"),
    (lambda: T.Temperature(0), "tau"), (lambda: T.Smoothing(1.5), "eps"), (lambda: T.Smoothing(-0.1), "eps"),
    (lambda: T.Mixture(1.1, "bcp"), "lam"), (lambda: T.Mixture(-0.1, "bcp"), "lam"),
    (lambda: T.MC(0, "bcp"), "S"), (lambda: T.MC(2.5, "bcp"), "S"),
    (lambda: T.Mixture(0.5, 3), "base"), (lambda: T.MC(2, None), "base"),
    (lambda: T.parse_teacher("dirichlet:0"), "alpha"), (lambda: T.parse_teacher("mc:0:bcp"), "S"),
    (lambda: T.parse_teacher("foo:1"), "unknown teacher"), (lambda: T.parse_teacher("dirichlet"), "one parameter"),
    (lambda: T.parse_teacher("onehot:3"), "no parameters"), (lambda: T.parse_teacher("dirichlet:abc"), "number"),
    (lambda: T.parse_teacher("mixture:0.5"), "base"), (lambda: T.parse_teacher("mc:2:foo"), "unknown teacher"),
    (lambda: T.OneHot().sample([[0.5, 0.6, 0.1]], [0], None), "p"),
    (lambda: T.Additive(0.1).sample([[1.2, -0.2]], None, np.random.default_rng()), "p"),
    (lambda: T.Dirichlet(1).cov([[0.5, 0.4]]), "p"), (lambda: T.Temperature(2).mean([[1.0]]), "p"),
    (lambda: T.OneHot().sample([P3, P3], [0, 1, 2], np.random.default_rng()), "y"),
    (lambda: T.OneHot().sample([P3], [3], np.random.default_rng()), "y"),
    (lambda: T.OneHot().sample([P3], [0.0], np.random.default_rng()), "y"),
    (lambda: T.OneHot().sample([P3], None, np.random.default_rng()), "y"),
    (lambda: T.Dirichlet(1).sample([P3], None, None), "rng"),
    (lambda: TargetSource("onehot", P3, [0], "fresh"), "p"),
    (lambda: TargetSource("onehot", [P3, P3], [0], "fresh"), "y"),
    (lambda: TargetSource("onehot", [P3], [0], "sometimes"), "mode"),
    (lambda: TargetSource("onehot", [P3], [0], "frozen")([1]), "idx"),
    (lambda: TargetSource("dirichlet:1", [P3], [0], "frozen"), "rng"),
    (lambda: TargetSource("dirichlet:1", [P3], [0], "fresh")([0]), "rng"),
]


@pytest.mark.parametrize("call,name", BAD, ids=[f"{i}-{n}" for i, (_, n) in enumerate(BAD)])
def test_bad_input_raises_value_error_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def _number(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


LEAVES = st.one_of(
    st.just(T.OneHot()), st.just(T.BCP()), _number(1e-3, 1e3).map(T.Dirichlet), _number(0, 1).map(T.Additive),
    _number(0, 1).map(T.AdditiveTangent), _number(1e-3, 0.5).map(T.Clipped), _number(0.1, 10).map(T.Temperature),
    _number(0, 1).map(T.Smoothing),
)
TEACHERS = st.recursive(LEAVES, lambda inner: st.one_of(
    st.builds(T.Mixture, _number(0, 1), inner), st.builds(T.MC, st.integers(1, 8), inner)), max_leaves=3)


@st.composite
def simplex(draw):
    k = draw(st.integers(2, 6))
    w = np.array(draw(st.lists(_number(0, 1), min_size=k, max_size=k)))
    w[draw(st.integers(0, k - 1))] += 1e-3  # at least one positive entry
    return w / w.sum()


@settings(max_examples=60, deadline=None)
@given(TEACHERS)
def test_spec_round_trip(teacher):
    again = T.parse_teacher(teacher.spec)
    assert again == teacher and str(again) == teacher.spec == str(teacher)
    assert (again.unbiased, again.stochastic) == (teacher.unbiased, teacher.stochastic)


@settings(max_examples=60, deadline=None)
@given(TEACHERS, simplex())
def test_moments_are_consistent(teacher, p):
    mean, cov = teacher.mean(p), teacher.cov(p)
    np.testing.assert_allclose(cov, cov.T, atol=1e-15)
    assert np.linalg.eigvalsh(cov).min() >= -1e-9 * max(1.0, np.abs(cov).max())
    np.testing.assert_allclose(mean.sum(), 1.0, atol=1e-9)
    if teacher.unbiased:
        np.testing.assert_allclose(mean, p, atol=1e-12)
    if teacher.sums_to_one:  # t on the affine simplex, so Cov 1 = 0
        np.testing.assert_allclose(cov @ np.ones(len(p)), 0.0, atol=1e-9)
    if not teacher.stochastic:
        np.testing.assert_array_equal(cov, 0.0)
