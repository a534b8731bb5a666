"""synthetic: exact optima, presets, seeds and input validation (DESIGN 2.5, 2.6, 3)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

import synthetic
from bkd_theory.students import fix_gauge
from synthetic import GaussianMixture, HeteroscedasticGaussian, TeacherNetworkTask


def optimum(task, gauge="pinned", kind="linear"):
    """theta* of the linear student, from the task's realizability hook in the given gauge."""
    return fix_gauge(task.logit_weights(kind), gauge)

TASKS = [(name, std) for name in synthetic.task_names() for std in (False, True)]
TASK_IDS = [f"{n}{'-std' if s else ''}" for n, s in TASKS]
# (task, features) pairs where the linear softmax student is realizable
REALIZABLE = {"paper": ("linear", "quadratic"), "triangle": ("linear", "quadratic"), "hetero": ("quadratic",),
              "teacher-net": ()}


def _probe_points(task, seed=0):
    """Sampled inputs plus far-out ones (|x| up to ~6 standard deviations)."""
    rng = np.random.default_rng(seed)
    x, _ = task.sample(300, rng)
    m, s = task.population_moments()
    return np.concatenate([x, m + 6 * s * rng.standard_normal((50, task.dim))])


def _student_probs(W, x, gauge, kind):
    logits = synthetic.augmented(x, kind) @ W.T
    if gauge == "pinned":
        logits = np.concatenate([logits, np.zeros((len(x), 1))], axis=1)
    return softmax(logits, axis=1)


@pytest.mark.parametrize(("name", "std"), TASKS, ids=TASK_IDS)
@pytest.mark.parametrize("gauge", ["pinned", "full"])
@pytest.mark.parametrize("kind", ["linear", "quadratic"])
def test_optimum_reproduces_bcp(name, std, gauge, kind):
    task = synthetic.make_task(name, standardize=std)
    if kind not in REALIZABLE[name]:
        with pytest.raises(ValueError, match="not realizable"):
            optimum(task, gauge, kind)
        return
    W = optimum(task, gauge, kind)
    K, F = task.num_classes, synthetic.num_features(task.dim, kind)
    assert W.shape == ((K - 1) if gauge == "pinned" else K, F + 1)
    if gauge == "full":
        np.testing.assert_allclose(W.sum(axis=0), 0.0, atol=1e-12)
    x = _probe_points(task)
    np.testing.assert_allclose(_student_probs(W, x, gauge, kind), task.bcp(x), rtol=0, atol=1e-10)


def test_gaussian_mixture_closed_form():
    task = GaussianMixture([[0.0, 1.0], [2.0, -1.0], [1.0, 1.0]], 0.5, priors=[0.2, 0.3, 0.5])
    W = optimum(task, "pinned")
    full = np.concatenate([task.means / 0.5, (-np.sum(task.means**2, 1) / 1.0 + np.log(task.priors))[:, None]], 1)
    np.testing.assert_allclose(W, (full - full[-1])[:-1], atol=1e-14)
    np.testing.assert_allclose(optimum(task, "full", "quadratic")[:, 2:5], 0.0, atol=1e-14)


def _numpy_forward(layers, x, activation):
    h = x
    for i, (W, b) in enumerate(layers):
        h = h @ W.T + b
        if i < len(layers) - 1:
            h = np.tanh(h) if activation == "tanh" else np.maximum(h, 0)
    return h


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("std", [False, True])
def test_network_optimum_reproduces_bcp(activation, std):
    task = TeacherNetworkTask(activation=activation, widths=(16, 8), beta=3.0)
    task = synthetic.standardize(task) if std else task
    net = task.network()
    layers = net.layers
    assert net.activation == activation and net.widths == (16, 8)
    assert [W.shape for W, _ in layers] == [(16, 5), (8, 16), (3, 8)]
    assert [b.shape for _, b in layers] == [(16,), (8,), (3,)]
    x = _probe_points(task)
    np.testing.assert_allclose(softmax(_numpy_forward(layers, x, activation), axis=1), task.bcp(x), atol=1e-10)
    with pytest.raises(ValueError, match="not realizable"):
        optimum(task)


def test_paper_means_match_legacy_global_rng():
    saved = np.random.get_state()
    try:
        np.random.seed(2)
        legacy = np.random.choice([4, 5, 6], size=(5, 30))
    finally:
        np.random.set_state(saved)
    before = np.random.get_state()[1].copy()
    task = GaussianMixture.paper()
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # no global side effect
    np.testing.assert_array_equal(task.means, legacy)
    assert (task.num_classes, task.dim, task.var) == (5, 30, 2.5)
    np.testing.assert_array_equal(task.priors, np.full(5, 0.2))


def test_triangle_preset():
    task = GaussianMixture.triangle()
    np.testing.assert_allclose(np.linalg.norm(task.means, axis=1), 1.5)
    np.testing.assert_allclose(task.means[1], 1.5 * np.array([np.cos(2 * np.pi / 3), np.sin(2 * np.pi / 3)]))
    assert task.var == 1.0


def test_make_task_names():
    for name in synthetic.task_names():
        for std in (False, True):
            task = synthetic.make_task(name, standardize=std)
            assert task.name == name
            assert isinstance(task, synthetic.Task)
    with pytest.raises(ValueError, match="unknown task"):
        synthetic.make_task("cifar")


@pytest.mark.parametrize(("name", "std"), TASKS, ids=TASK_IDS)
def test_same_seed_bit_identical(name, std):
    task = synthetic.make_task(name, standardize=std)
    x1, y1 = task.sample(500, np.random.default_rng(7))
    x2, y2 = task.sample(500, np.random.default_rng(7))
    x3, _ = task.sample(500, np.random.default_rng(8))
    assert x1.dtype == np.float64 and y1.dtype == np.int64 and x1.shape == (500, task.dim)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert y1.min() >= 0 and y1.max() < task.num_classes


def test_features_order_and_affine_map():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3))
    phi = synthetic.features(x, "quadratic")
    assert phi.shape == (7, 3 + 6) == (7, synthetic.num_features(3, "quadratic"))
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    np.testing.assert_array_equal(phi[:, 3:], np.stack([x[:, i] * x[:, j] for i, j in pairs], axis=1))
    np.testing.assert_array_equal(synthetic.features(x, "linear"), x)
    m, s = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    for kind in ("linear", "quadratic"):
        T = synthetic.affine_feature_map(m, s, kind)
        np.testing.assert_allclose(synthetic.augmented(m + s * x, kind), synthetic.augmented(x, kind) @ T.T, atol=1e-12)


@pytest.mark.parametrize("name", ["paper", "triangle", "hetero"])
def test_standardized_same_bcp(name):
    base = synthetic.make_task(name)
    task = synthetic.standardize(base)
    x, _ = base.sample(200, np.random.default_rng(1))
    np.testing.assert_allclose(task.bcp(task.from_raw(x)), base.bcp(x), atol=1e-12)
    m, s = task.population_moments()
    np.testing.assert_allclose(m, 0.0, atol=1e-12)
    np.testing.assert_allclose(s, 1.0, atol=1e-12)
    again = synthetic.standardize(task)
    np.testing.assert_allclose(again.shift, task.shift)
    np.testing.assert_allclose(again.scale, task.scale)
    if name != "hetero":  # W' = W diag(s), b' = b + W m (DESIGN 2.6)
        W, Ws = optimum(base, "full"), optimum(task, "full")
        np.testing.assert_allclose(Ws[:, :-1], W[:, :-1] * task.scale, atol=1e-12)
        np.testing.assert_allclose(Ws[:, -1], W[:, -1] + W[:, :-1] @ task.shift, atol=1e-9)


def test_linear_realizable_when_variances_shared():
    task = HeteroscedasticGaussian([[0.0, 0.0], [1.0, 2.0]], [[1.0, 2.0], [1.0, 2.0]])
    x, _ = task.sample(200, np.random.default_rng(0))
    np.testing.assert_allclose(_student_probs(optimum(task, "pinned"), x, "pinned", "linear"), task.bcp(x), atol=1e-12)


MEANS = [[0.0, 0.0], [1.0, 1.0]]
BAD_INPUTS = [
    ("var", lambda: GaussianMixture(MEANS, 0.0)),
    ("var", lambda: GaussianMixture(MEANS, -1.0)),
    ("var", lambda: GaussianMixture(MEANS, float("nan"))),
    ("priors", lambda: GaussianMixture(MEANS, 1.0, priors=[0.5, 0.4])),
    ("priors", lambda: GaussianMixture(MEANS, 1.0, priors=[1.2, -0.2])),
    ("priors", lambda: GaussianMixture(MEANS, 1.0, priors=[1.0, 0.0])),
    ("priors", lambda: GaussianMixture(MEANS, 1.0, priors=[0.2, 0.3, 0.5])),
    ("means", lambda: GaussianMixture([[0.0, 1.0]], 1.0)),
    ("means", lambda: GaussianMixture([0.0, 1.0], 1.0)),
    ("means", lambda: GaussianMixture([[0.0, np.nan], [1.0, 1.0]], 1.0)),
    ("means", lambda: HeteroscedasticGaussian([[0.0, np.inf], [1.0, 1.0]], [1.0, 1.0])),
    ("variances", lambda: HeteroscedasticGaussian(MEANS, [1.0, -1.0])),
    ("variances", lambda: HeteroscedasticGaussian(MEANS, [1.0, 0.0])),
    ("variances", lambda: HeteroscedasticGaussian(MEANS, [1.0, 1.0, 1.0])),
    ("priors", lambda: HeteroscedasticGaussian(MEANS, [1.0, 2.0], priors=[0.6, 0.6])),
    ("num_classes", lambda: TeacherNetworkTask(num_classes=1)),
    ("beta", lambda: TeacherNetworkTask(beta=-1.0)),
    ("activation", lambda: TeacherNetworkTask(activation="gelu")),
    ("n", lambda: GaussianMixture(MEANS, 1.0).sample(0, np.random.default_rng(0))),
    ("n", lambda: GaussianMixture(MEANS, 1.0).sample(-3, np.random.default_rng(0))),
    ("n", lambda: TeacherNetworkTask().sample(0, np.random.default_rng(0))),
    ("n", lambda: GaussianMixture(MEANS, 1.0).bayes_accuracy(method="monte-carlo", n=0)),
    ("n", lambda: GaussianMixture(MEANS, 1.0).check_bcp(n=0)),
    ("n", lambda: GaussianMixture(MEANS, 1.0).sample(1.5, 0)),
    ("rng", lambda: GaussianMixture(MEANS, 1.0).sample(5, "seed")),
    ("x", lambda: GaussianMixture(MEANS, 1.0).bcp(np.zeros((4, 3)))),
    ("gauge", lambda: optimum(GaussianMixture(MEANS, 1.0), gauge="free")),
    ("features", lambda: GaussianMixture(MEANS, 1.0).logit_weights("cubic")),
    ("method", lambda: GaussianMixture(MEANS, 1.0).conditional_entropy(method="simpson")),
    ("target", lambda: TeacherNetworkTask().with_entropy(2.0)),
]


@pytest.mark.parametrize(("param", "make"), BAD_INPUTS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD_INPUTS)])
def test_bad_input_names_parameter(param, make):
    with pytest.raises(ValueError, match=rf"\b{param}\b"):
        make()


def test_arrays_are_read_only():
    task = GaussianMixture.triangle()
    with pytest.raises(ValueError):
        task.means[0, 0] = 1.0


def test_describe_keys():
    d = synthetic.make_task("triangle").describe(n=2000)
    assert (d["K"], d["d"]) == (3, 2)
    assert set(d["bayes_accuracy"]) == {"value", "se", "method"}
    assert d["realizable_by"] == ["linear student, linear features", "linear student, quadratic features"]
    assert synthetic.make_task("hetero").describe(n=2000)["realizable_by"] == ["linear student, quadratic features"]
    assert synthetic.make_task("teacher-net").describe(n=2000)["realizable_by"] == ["network 16 tanh"]


def test_sample_takes_a_seed_or_a_generator():
    task = synthetic.make_task("triangle")
    x, y = task.sample(5, 42)
    x2, y2 = task.sample(5, np.random.default_rng(42))
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_make_task_takes_a_user_task_by_path():
    task = synthetic.make_task("synthetic.gaussian:GaussianMixture.triangle")
    assert task.name == "triangle"
    with pytest.raises(ValueError, match="no attribute"):
        synthetic.make_task("synthetic.gaussian:Nope")
    with pytest.raises(ValueError, match="unknown task"):
        synthetic.make_task("cifar")
