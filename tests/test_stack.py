"""Stacked runs (`engine.stack.run_many`) and aligned chain rows (`engine.rows`): every record of a
stack is bit for bit that of the run alone, and a chain of the 2x128 MLP alone equals it in a batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import synthetic
from bkd_theory import sgd
from bkd_theory.engine import Loop, build
from bkd_theory.engine.rows import ROW_ALIGN, chain_rows
from bkd_theory.engine.stack import _shared, plan
from bkd_theory.students import build_student

#: the authors' student and optimiser on the paper task, small (F1's configuration, shorter)
PAPER = dict(task="paper", standardize=True, student="mlp", gamma=5e-4, momentum=0.9, batch=1, init="random",
             dtype="float32", steps=400, eval_every=100, eval_n=200)
FINITE = dict(regime="finite", sampling="shuffle", noise="frozen", n=300)


def assert_same_run(a, b) -> None:
    """Two `Run` records equal bit for bit (but wall time)."""
    assert a.config == b.config and a.seed == b.seed
    np.testing.assert_array_equal(a.theta_final, b.theta_final)
    np.testing.assert_array_equal(a.diverged_step, b.diverged_step)
    assert a.diverged_reason == b.diverged_reason and a.divergence == b.divergence
    assert a.records.keys() == b.records.keys() and a.points.keys() == b.points.keys()
    for q in a.records:
        np.testing.assert_array_equal(a.records[q][0], b.records[q][0])
        np.testing.assert_array_equal(a.records[q][1], b.records[q][1])
    for q in a.points:
        np.testing.assert_array_equal(a.points[q][1], b.points[q][1])
    assert (a.relaxation is None) == (b.relaxation is None)
    if a.relaxation is not None:
        np.testing.assert_array_equal(a.relaxation["eigenvalues"], b.relaxation["eigenvalues"])
        assert a.relaxation["decay"].keys() == b.relaxation["decay"].keys()
        for k in a.relaxation["decay"]:
            np.testing.assert_array_equal(a.relaxation["decay"][k], b.relaxation["decay"][k])


def test_chain_rows_start_on_the_boundary_and_hold_the_shape():
    for dtype in (torch.float32, torch.float64):
        t = chain_rows(5, 21125, dtype)
        assert t.shape == (5, 21125) and t.dtype == dtype
        assert all((t[r].data_ptr() % ROW_ALIGN) == 0 for r in range(5))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_mlp_chain_alone_equals_chain_in_batch(momentum):
    # P = 21125 is odd: packed rows put chains 1-3 off the 16-byte boundary, where the batched GEMMs
    # round differently (this test fails with ROW_ALIGN = 4, i.e. rows back to back)
    kw = dict(PAPER, teacher="onehot", momentum=momentum, steps=150, eval_every=50, seed=2)
    batch = sgd.run(chains=4, **kw)
    for r in (1, 2, 3):
        alone = sgd.run(chains=1, first_chain=r, **kw)
        np.testing.assert_array_equal(alone.theta_final[0], batch.theta_final[r])
        np.testing.assert_array_equal(alone.values("excess_risk")[1][:, 0], batch.values("excess_risk")[1][:, r])


def test_stacked_runs_equal_the_runs_alone_mlp():
    # teachers, seeds, chain counts, regimes, evaluation sets and instruments differ: F1's kind of stack
    cfgs = [{**PAPER, **FINITE, "teacher": "onehot", "chains": 3, "seed": 1},
            {**PAPER, **FINITE, "teacher": "dirichlet:0.5", "chains": 3, "seed": 1},
            {**PAPER, "teacher": "bcp", "chains": 2, "seed": 4, "first_chain": 5, "eval_n": 300},
            {**PAPER, **FINITE, "teacher": "dirichlet:5", "chains": 1, "seed": 1, "noise": "fresh"}]
    ins = [None, ["val_loss", "calibration"], None, ["dist2"]]
    stacked = sgd.run_many(cfgs, instruments=ins)
    assert len({r.wall_time for r in stacked}) == 1  # one loop
    for c, i, r in zip(cfgs, ins, stacked):
        assert_same_run(r, sgd.run(**c, instruments=i))


def test_stacked_runs_equal_the_runs_alone_adam_relaxation_and_kd():
    # Adam's rate is a mean over the run's own chains (the stationarity record); KD targets stack
    lin = dict(task="triangle", teacher="dirichlet:2", optimizer="adam", gamma=0.01, steps=300, eval_every=50, chains=3)
    kd = dict(task="triangle", kd_temperature=2.0, lam=0.5, gamma=0.05, steps=200, eval_every=50, chains=2)
    cfgs = [{**lin, "seed": 0}, {**lin, "seed": 7, "teacher": "onehot"}, {**kd, "teacher": "dirichlet:1"},
            {**kd, "teacher": "bcp", "seed": 3}]
    stacked = sgd.run_many(cfgs)
    assert stacked[0].relaxation is not None and stacked[0].wall_time == stacked[1].wall_time
    assert stacked[2].wall_time == stacked[3].wall_time != stacked[0].wall_time  # two stacks
    for c, r in zip(cfgs, stacked):
        assert_same_run(r, sgd.run(**c))


def test_a_diverging_run_in_a_stack_is_recorded_as_alone():
    # gamma at the edge of stability (tests/test_sgd.py): some chains diverge; the run stacked with a
    # calm one records the same steps and reasons, and the calm run is unharmed
    edge = dict(task="triangle", student="mlp:16:relu", teacher="onehot", gamma=0.65, init="random", steps=300,
                dtype="float32", eval_every=50, chains=16)
    cfgs = [{**edge, "teacher": "bcp", "seed": 5, "chains": 4}, edge]
    stacked = sgd.run_many(cfgs)
    assert 0 < (stacked[1].diverged_step >= 0).sum() < 16
    for c, r in zip(cfgs, stacked):
        assert_same_run(r, sgd.run(**c))


def test_plan_stacks_by_update_and_size():
    def setup(**kw):
        return build(**{**PAPER, "teacher": "onehot", "chains": 6, **kw})

    s = [setup(), setup(teacher="bcp"), setup(gamma=1e-3), setup(seed=3), setup(student="linear", init="perturbed")]
    shared = _shared(s, [(None, None)] * len(s))
    per = 6 * 21125 * 4
    assert plan(shared) == [[0, 1, 3], [2], [4]]
    assert plan(shared, stack_bytes=2 * per) == [[0, 1], [2], [3], [4]]
    assert plan(shared, stack_bytes=0) == [[0], [1], [2], [3], [4]]


def test_loop_refuses_setups_that_do_not_share_an_update():
    task = synthetic.make_task("triangle")
    student = build_student("linear", task)
    a, b = build(task, student, "bcp", gamma=0.1), build(task, student, "bcp", gamma=0.2)
    with pytest.raises(ValueError, match="gamma"):
        Loop([a, b])
    with pytest.raises(ValueError, match="one task and one student"):
        Loop([a, build(task, build_student("linear", task), "bcp", gamma=0.1)])
    with pytest.raises(ValueError, match="one entry per setup"):
        Loop([a, a], [None])


@pytest.mark.parametrize("kw,match", [
    (dict(configs={"gamma": 0.1}), "sequence of RunConfigs"),
    (dict(configs=[{"gamma": 0.1}], instruments=[None, None]), "one entry per config"),
    (dict(configs=[{"gamma": 0.1}], stack_bytes=-1), "stack_bytes"),
    (dict(configs=[{"gamma": 0.1}, 3]), r"configs\[1\]"),
    (dict(configs=[{"gamma": 0.1}, {"gamma": -1.0}]), "gamma"),
])
def test_run_many_bad_input_names_the_parameter(kw, match):
    with pytest.raises(ValueError, match=match):
        sgd.run_many(**kw)


def test_recipes_runs_stacks_and_memoises_the_records_of_run():
    from bkd_theory.claims import recipes

    base = {**PAPER, **FINITE, "chains": 2, "seed": 1, "steps": 200, "instruments": ("val_loss", "excess_risk")}
    cfgs = [{**base, "teacher": t, "extra-key": i} for i, t in enumerate(("onehot", "bcp", "dirichlet:5"))]
    recipes._run.cache_clear()
    alone = [recipes.run(c) for c in cfgs]
    recipes._run.cache_clear()
    made = recipes.runs(cfgs + cfgs[:1])  # a repeated configuration is made once
    assert len({r.wall_time for r in made}) == 1 and made[3] is made[0]
    assert all(recipes.run(c) is r for c, r in zip(cfgs, made)) and not recipes._STACKED
    for a, b in zip(alone, made):
        assert_same_run(a, b)
    assert recipes.runs(cfgs) == made[:3]  # memoised: nothing runs again


def test_recipes_stationaries_equal_stationary_one_at_a_time():
    from bkd_theory.claims import recipes

    base = {"task": "triangle", "teacher": "additive:0.02", "gamma": 0.05, "steps": 600, "chains": 8, "eval_every": 50,
            "init": "optimum", "init_scale": 0.0}
    pts = [{**base, "lam": lam, "seed": i} for i, lam in enumerate((0.25, 0.5, 1.0))]
    recipes._run.cache_clear()
    alone = [recipes.stationary(p, "excess_risk") for p in pts]
    recipes._run.cache_clear()
    together = recipes.stationaries(pts, "excess_risk")
    assert len({recipes.run(p).wall_time for p in pts}) == 1  # one stacked loop
    assert [(o.value, o.se, o.stationary) for o in together] == [(o.value, o.se, o.stationary) for o in alone]


def test_per_run_instruments_must_be_sequences():
    with pytest.raises(ValueError, match=r"instruments\[1\] must be None or a sequence"):
        sgd.run_many([{"gamma": 0.1}, {"gamma": 0.1}], instruments=[None, "dist2"])


def test_prefetch_leaves_out_a_refused_configuration_which_raises_in_its_place():
    from bkd_theory.claims import recipes

    good = {"task": "triangle", "teacher": "bcp", "gamma": 0.05, "steps": 50, "chains": 2, "eval_every": 25}
    bad = {**good, "teacher": "onehot", "batch": 0}
    recipes._run.cache_clear()
    recipes.prefetch([good, bad])  # no error here; the good one is made
    assert len(recipes._STACKED) == 1
    assert_same_run(recipes.run(good), sgd.run(**{k: v for k, v in recipes.run_config(good).items() if k != "instruments"},
                                               instruments=["excess_risk", "dist2"]))
    assert not recipes._STACKED
    with pytest.raises(ValueError, match="batch"):
        recipes.run(bad)


def test_prefetch_makes_nothing_when_run_many_refuses_one():
    from bkd_theory.claims import recipes

    good = {"task": "triangle", "teacher": "bcp", "gamma": 0.05, "steps": 50, "chains": 2, "eval_every": 25}
    huge = {**good, "teacher": "onehot", "chains": 10_000, "steps": 1_000_000}  # 1e10 chain-steps: over the limit
    recipes._run.cache_clear()
    recipes.prefetch([good, huge])
    assert not recipes._STACKED and not recipes._run.cached(recipes.run_config(good))
    with pytest.raises(ValueError, match="max-chain-steps"):
        recipes.run(huge)
