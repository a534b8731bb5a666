"""The torch data feed (`engine.feed.TorchFeed`): per-chain streams, the task's law, the teachers' torch
forms against their numpy draws, the fallbacks, and an end-to-end comparison with the numpy feed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import synthetic
from bkd_theory import sgd
from bkd_theory.engine.build import build
from bkd_theory.engine.feed import Feed, TorchFeed, make_feed, torch_log_bcp
from bkd_theory.rng import chain_streams, generator, torch_feed_generators
from bkd_theory.stats import mean_se
from bkd_theory.teachers import parse_teacher

F64 = torch.float64


def _feed(chains, **cfg):
    setup = build(None, **{"task": "triangle", "teacher": "onehot", "batch": 4, "feed": "torch", **cfg})
    return make_feed(setup.config, setup.task, setup.teacher, [chain_streams(0, c) for c in chains], F64, chains)


def test_chain_r_alone_draws_what_it_draws_beside_others():
    x3, t3 = _feed([0, 1, 2], teacher="bcp").next_page()
    x1, t1 = _feed([2], teacher="bcp").next_page()
    assert torch.equal(x3[:, 2], x1[:, 0]) and torch.equal(t3[:, 2], t1[:, 0])
    assert not torch.equal(x3[:, 0], x3[:, 1])


def test_generators_are_their_own_streams():
    a, b = torch_feed_generators(0, 5)
    assert a.initial_seed() != b.initial_seed()
    assert a.initial_seed() not in (chain_streams(0, 5).torch.initial_seed(), torch_feed_generators(0, 6)[0].initial_seed())
    assert torch_feed_generators(0, 5)[0].initial_seed() == a.initial_seed()


def test_inputs_follow_the_tasks_class_gaussians():
    """Label frequencies, class-conditional means and variances of 64 x 1024 draws within 4 SE
    (binomial SE; mean SE sqrt(v / n_k); variance SE sqrt(2 / n_k) of the standardised residuals)."""
    task = synthetic.make_task("paper", standardize=True)
    setup = build(None, task="paper", standardize=True, teacher="onehot", feed="torch")
    chains = list(range(64))
    x, t = make_feed(setup.config, task, setup.teacher, [chain_streams(1, c) for c in chains], F64, chains).next_page()
    x, t = x.reshape(-1, task.dim).numpy(), t.reshape(-1, task.num_classes).numpy()
    y = t.argmax(axis=1)
    pi, mu, v = task.class_gaussians()
    n = len(y)
    freq = np.bincount(y, minlength=len(pi)) / n
    assert np.all(np.abs(freq - pi) < 4 * np.sqrt(pi * (1 - pi) / n))
    for k in range(len(pi)):
        r = (x[y == k] - mu[k]) / np.sqrt(v[k])
        nk = len(r)
        assert np.all(np.abs(r.mean(axis=0)) < 4 / np.sqrt(nk)), k
        assert np.all(np.abs(r.var(axis=0) - 1) < 4 * np.sqrt(2 / nk)), k


@pytest.mark.parametrize("name", ["triangle", "paper", "hetero"])
def test_torch_bcp_is_the_tasks(name):
    task = synthetic.make_task(name, standardize=name == "paper")
    A, c, features = torch_log_bcp(task)
    x, _ = task.sample(500, generator(0, 1))
    from bkd_theory.students.linear import torch_features
    p = torch.softmax(torch_features(torch.from_numpy(x), features) @ A + c, dim=-1)
    np.testing.assert_allclose(p.numpy(), task.bcp(x), rtol=0, atol=1e-12)  # float64 rounding of a K-class softmax
    assert torch_log_bcp(synthetic.make_task("teacher-net")) is None


@pytest.mark.parametrize("spec", ["onehot", "bcp", "temperature:2", "temperature:0.5", "smoothing:0.1",
                                  "mixture:0.3:bcp", "mixture:0.5:temperature:2"])
def test_torch_forms_equal_the_numpy_draws(spec):
    teacher = parse_teacher(spec)
    task = synthetic.make_task("triangle")
    x, y = task.sample(300, generator(0, 2))
    p = task.bcp(x)
    t = teacher.draw_torch(torch.from_numpy(p), torch.from_numpy(y), torch.Generator(), x=torch.from_numpy(x),
                           num_classes=3, dtype=F64)
    np.testing.assert_allclose(t.numpy(), teacher.sample(p, y, None, x=x), rtol=0, atol=1e-14)  # a few float64 ops


def test_a_teacher_without_a_torch_form_is_drawn_from_the_chains_numpy_stream():
    feed = _feed([0, 1], teacher="dirichlet:5")
    assert isinstance(feed, TorchFeed) and not feed.torch_targets
    x, t = feed.next_page()
    s = chain_streams(0, 1)
    xs = x[:, 1].reshape(-1, 2).numpy()
    task = synthetic.make_task("triangle")
    # the same x (drawn in torch), then the numpy teacher stream of chain 1: the labels are the torch ones
    y = torch.multinomial(torch.full((3,), 1 / 3, dtype=F64), len(xs), replacement=True,
                          generator=torch_feed_generators(0, 1)[0]).numpy()
    expected = parse_teacher("dirichlet:5").sample(task.bcp(xs), y, s.teacher, x=xs)
    np.testing.assert_array_equal(t[:, 1].reshape(-1, 3).numpy(), expected)


def test_kd_temperature_and_finite_regime_run_on_the_torch_feed():
    run = sgd.run(task="triangle", teacher="mixture:0.5:bcp", kd_temperature=2.0, feed="torch", steps=20, chains=2,
                  instruments=["excess_risk"], eval_every=10)
    assert np.all(np.isfinite(run.values("excess_risk")[1]))
    finite = dict(regime="finite", n=50, steps=20, chains=2, instruments=["dist2"], eval_every=10)
    a, b = sgd.run(feed="torch", **finite), sgd.run(**finite)
    np.testing.assert_array_equal(a.theta_final, b.theta_final)  # finite sets are the numpy feed's


def test_same_seed_same_run_and_the_numpy_feed_is_another_sample():
    common = dict(task="triangle", teacher="onehot", steps=200, chains=3, instruments=["dist2"], eval_every=100)
    a, b, c = sgd.run(feed="torch", **common), sgd.run(feed="torch", **common), sgd.run(**common)
    np.testing.assert_array_equal(a.theta_final, b.theta_final)
    assert not np.array_equal(a.theta_final, c.theta_final)
    assert a.config["feed"] == "torch" and c.config["feed"] == "numpy"


def test_both_feeds_reach_the_same_stationary_excess_risk():
    """Mean stationary F - F* over chains and the second half of the run, torch feed against numpy feed:
    the same law, so they agree within 4 combined SE (the SE over chains of each chain's time average; both
    runs share the seed's evaluation sample, so its error is common to both and cancels in the difference)."""
    common = dict(task="triangle", teacher="onehot", gamma=0.2, init="optimum", steps=2000, chains=128, seed=3,
                  instruments=["excess_risk"], eval_every=100, eval_n=500)
    means = []
    for feed in ("numpy", "torch"):
        steps, values = sgd.run(feed=feed, **common).values("excess_risk")
        means.append(mean_se(values[steps >= 1000].mean(axis=0))[:2])
    (m0, s0), (m1, s1) = means
    assert abs(m0 - m1) < 4 * np.hypot(s0, s1), (means,)
    assert m0 > 10 * s0  # a resolved excess risk, not zero against zero


def test_numpy_feed_keeps_a_placeholder_only_for_laws_that_ignore_p():
    setup = build(None, task="triangle", teacher="onehot")
    feed = Feed(setup.config, setup.task, setup.teacher, [chain_streams(0, 0)], F64)
    x, y = setup.task.sample(10, generator(0, 3))
    _, t = feed.draw_targets(x, y, chain_streams(0, 0))
    np.testing.assert_array_equal(t, np.eye(3)[y])
    assert parse_teacher("onehot").reads_p is False and parse_teacher("dirichlet:2").reads_p is True
    assert parse_teacher("mixture:0.5:onehot").reads_p is False and parse_teacher("mixture:0.5:bcp").reads_p is True


def test_a_bad_feed_names_the_parameter(capsys):
    from bkd_theory import cli

    with pytest.raises(ValueError, match="feed must be one of"):
        sgd.RunConfig(feed="jax")
    with pytest.raises(SystemExit) as exit_:  # a choices flag: argparse's own usage error
        cli.main(["run", "--feed", "jax", "--steps", "2"])
    assert exit_.value.code == 2 and "--feed" in capsys.readouterr().err
