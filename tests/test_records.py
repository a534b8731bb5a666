"""Run records: tidy table, stationary summary with SE across chains (DESIGN 2.9), CSV/JSON round trip."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bkd_theory import sgd
from bkd_theory.records import Run, versions


def _run(records, diverged=None, R=None) -> Run:
    R = R or next(iter(records.values()))[1].shape[1]
    return Run(config={"steps": 100}, seed=0, versions=versions(), wall_time=1.0,
               diverged_step=np.full(R, -1) if diverged is None else np.asarray(diverged),
               theta_final=np.zeros((R, 2)), chains=np.arange(R), records=records)


def test_table_is_tidy():
    steps = np.array([0, 10, 20])
    run = _run({"a": (steps, np.arange(6.0).reshape(3, 2)), "b": (steps[:2], np.ones((2, 2)))})
    t = run.table()
    assert list(t.columns) == ["step", "chain", "quantity", "value"] and len(t) == 3 * 2 + 2 * 2
    assert t[(t.quantity == "a") & (t.step == 10) & (t.chain == 1)].value.item() == 3.0


def test_summary_is_the_time_average_over_the_last_half_with_se_across_chains():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 101, 10)  # window: steps >= 50, i.e. 6 points
    vals = 2.0 + rng.standard_normal((11, 40))
    vals[:5] = 100.0  # transient before the window is ignored
    trend = np.linspace(0, 5, 11)[:, None] + 0.01 * rng.standard_normal((11, 40))
    vals[:, 3] = np.nan  # a diverged chain is excluded
    s = _run({"flat": (steps, vals), "trend": (steps, trend)}, diverged=[-1, -1, -1, 7] + [-1] * 36).summary()
    e = s["quantities"]["flat"]
    avg = np.delete(vals[5:], 3, axis=1).mean(axis=0)
    assert e["value"] == pytest.approx(avg.mean()) and e["se"] == pytest.approx(avg.std(ddof=1) / math.sqrt(39))
    assert e["chains"] == 39 and e["window"] == [50, 100] and e["stationary"] is True
    assert s["quantities"]["trend"]["stationary"] is False and s["diverged_chains"] == 1


def test_measured_flattens_and_combines_stationarity():
    steps = np.arange(0, 101, 10)
    flat = np.ones((11, 3)) + np.arange(3)
    m = _run({"excess_risk": (steps, flat), "dist2": (steps, flat * 2)}).measured()
    assert m["excess_risk"] == pytest.approx(2.0) and m["dist2_se"] == pytest.approx(2 / math.sqrt(3))
    assert m["excess_risk_stationary"] is True and m["diverged_chains"] == 0 and "sigma2_at_optimum" not in m
    assert "relaxation not checked" in m["dist2_stationary_reason"]


def test_save_load_round_trip(tmp_path):
    run = sgd.run(task="triangle", teacher="dirichlet:2", gamma=0.1, steps=30, chains=3, eval_every=10, first_chain=5)
    run.diverged_step[1] = 17  # exercise the field
    back = Run.load(run.save(tmp_path / "r"))
    assert back.config == run.config and back.versions == run.versions and back.seed == run.seed
    np.testing.assert_array_equal(back.theta_final, run.theta_final)
    np.testing.assert_array_equal(back.diverged_step, run.diverged_step)
    np.testing.assert_array_equal(back.chains, [5, 6, 7])
    pd.testing.assert_frame_equal(back.table(), run.table())
    assert sgd.RunConfig.from_dict(back.config) == sgd.RunConfig.from_dict(run.config)
    assert not list(tmp_path.glob("r/*.pkl"))


def test_load_rejects_other_directories(tmp_path):
    with pytest.raises(ValueError, match="path"):
        Run.load(tmp_path)


def test_a_biased_teacher_relaxes_at_half_the_rate():
    """F - F* of a biased teacher is linear in the mean offset, which decays as exp(-lam decay); an
    unbiased one's is quadratic, exp(-2 lam decay) (`stats.unrelaxed_fraction`). The record says
    which, and `auto_steps` gives a biased teacher twice the steps (same gamma and mu)."""
    from bkd_theory.claims import recipes
    from bkd_theory.stats import unrelaxed_fraction

    assert unrelaxed_fraction(np.array([0.3]), 1.0, 2.0, order=1) == pytest.approx(math.exp(-0.6), rel=1e-15)
    assert unrelaxed_fraction(np.array([0.3]), 1.0, 2.0) == pytest.approx(math.exp(-1.2), rel=1e-15)
    common = dict(task="triangle", student="linear", gamma=0.05, steps=20, chains=2, eval_every=10, dtype="float64")
    assert sgd.run(teacher="temperature:2", **common).relaxation["order"] == 1
    assert sgd.run(teacher="onehot", **common).relaxation["order"] == 2
    cfg = {"task": "triangle", "student": "linear", "gauge": "pinned", "seed": 0, "gamma": 0.05, "steps": "auto",
           "burn": 2.5, "min_steps": 10, "eval_every": 10}
    biased, unbiased = (recipes.auto_steps({**cfg, "teacher": t}) for t in ("temperature:2", "onehot"))
    assert abs(biased - 2 * unbiased) <= 10  # both rounded up to a multiple of eval_every
