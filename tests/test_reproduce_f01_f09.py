"""Figure recipes F1 (learning curves) and F9 (Bayesian teachers) in quick mode, and F9's trained-teacher students."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_softmax

import synthetic
from bkd_theory.teachers import FunctionTeacher
from bkd_theory.reproduce import CLAIM_COLUMNS, f01_learning_curves, f09_bayesian_teachers

VERDICTS = {"agrees", "disagrees", "holds", "fails", "inconclusive", "finding"}
FIGURES = [
    ("F1", f01_learning_curves, ["teacher", "seed", "step", "quantity", "value"]),
    ("F9", f09_bayesian_teachers, ["part", "teacher", "seed", "step", "quantity", "value", "se"]),
]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Each figure made once in quick mode: fig_id -> (out dir, returned paths)."""
    out = {}
    for fig_id, module, _ in FIGURES:
        d = tmp_path_factory.mktemp(fig_id)
        out[fig_id] = (d, module.make(quick=True, out=d))
    return out


@pytest.mark.parametrize("fig_id, module, columns", FIGURES, ids=[f[0] for f in FIGURES])
def test_quick_make_writes_png_csv_and_claims(made, fig_id, module, columns):
    out, paths = made[fig_id]
    for suffix in (".png", ".csv", ".claims.csv"):
        assert out / f"{fig_id}{suffix}" in paths
    assert (out / f"{fig_id}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = pd.read_csv(out / f"{fig_id}.csv")
    assert list(data.columns) == columns
    assert len(data) > 0 and np.isfinite(data["value"]).all()
    claims = pd.read_csv(out / f"{fig_id}.claims.csv")
    assert tuple(claims.columns) == CLAIM_COLUMNS
    assert len(claims) >= 5
    assert np.isfinite(claims["measured"]).all() and np.isfinite(claims["measured_se"]).all()
    assert set(claims["verdict"]) <= VERDICTS


def test_f1_csv_has_every_teacher_curve_and_noise(made):
    out, _ = made["F1"]
    data = pd.read_csv(out / "F1.csv")
    setting = f01_learning_curves.QUICK
    for teacher in f01_learning_curves.TEACHERS:
        rows = data[data["teacher"] == teacher]
        curve = rows[rows["quantity"] == "val_loss"]
        assert sorted(curve["seed"].unique()) == list(range(setting.seeds))
        assert curve["step"].max() == setting.steps
        assert (rows["quantity"] == "loss_noise").sum() == setting.seeds
    noise = pd.read_csv(out / "F1.noise.csv")
    assert noise.set_index("teacher").loc["bcp", "ratio_to_bcp"] == 1.0


def test_f9_reports_every_teacher_against_the_truth(made):
    out, _ = made["F9"]
    data = pd.read_csv(out / "F9.csv")
    teach = data[(data["part"] == "teacher") & (data["quantity"] == "kl")].set_index("teacher")
    assert set(teach.index) == {*f09_bayesian_teachers.TRAINED, "bcp"}
    assert teach.loc["bcp", "value"] == 0.0
    assert (teach.drop(index="bcp")["value"] > 0).all()
    students = set(data.loc[data["part"] == "student", "teacher"])
    assert students == {*f09_bayesian_teachers.TRAINED, *f09_bayesian_teachers.REFERENCE}


def test_directional_verdicts():
    assert f01_learning_curves.directional(3.0, 1.0) == "holds"
    assert f01_learning_curves.directional(-3.0, 1.0) == "fails"
    assert f01_learning_curves.directional(1.0, 1.0) == "inconclusive"
    assert f01_learning_curves.directional(1.0, float("nan")) == "inconclusive"


def test_f9_student_of_the_exact_bcp_teacher_reproduces_the_bcp_run():
    """F9's students take a trained teacher object in `sgd.run`. The exact-BCP `FunctionTeacher`
    (p~ = p) must give the bcp student bit for bit: same chain streams, and targets
    exp(task.log_bcp(x)), which is how the task computes `bcp(x)`. `ExcessRisk` is measured against
    the true p, so a biased teacher shares the step-0 value (same initialisation) and then moves away.
    """
    task = synthetic.make_task("paper", standardize=True)
    setting = dataclasses.replace(f09_bayesian_teachers.QUICK, n=40, epochs=1, seeds=2, eval_every=20, eval_n=200)
    exact = FunctionTeacher(task.log_bcp, name="exact", log=True)
    flat = FunctionTeacher(lambda x: log_softmax(task.log_bcp(x) / 4.0, axis=1), name="tempered:4", log=True)
    ref, via, biased = (f09_bayesian_teachers._student(task, setting, t) for t in ("bcp", exact, flat))
    assert via.config["teacher"] == "exact" and biased.config["teacher"] == "tempered:4"
    np.testing.assert_array_equal(via.theta_final, ref.theta_final)
    for quantity in f09_bayesian_teachers.CURVES:
        np.testing.assert_array_equal(via.values(quantity)[1], ref.values(quantity)[1])
    risk, risk_ref = biased.values("excess_risk")[1], ref.values("excess_risk")[1]
    np.testing.assert_array_equal(risk[0], risk_ref[0])
    assert not np.array_equal(biased.theta_final, ref.theta_final)
