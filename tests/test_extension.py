"""The open bench: a user's own law, task and nn.Module, unregistered, through run, predict and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import synthetic
from bkd_theory import cli, sgd, theory
from bkd_theory.students import Linear, ModuleStudent
from bkd_theory.teachers import Mixture, parse_teacher
from user_extensions import HalfLabel, Stripes, small_mlp

F64 = torch.float64


def test_user_law_gets_its_exact_sigma2_from_the_general_route():
    # E4 with Cov = C_y / 2 on the same Monte Carlo inputs: exactly half of onehot's sigma^2 (rounding)
    task = synthetic.make_task("triangle")
    student = Linear(task, dtype=F64)
    half = theory.predict(task, student, HalfLabel(), gamma=0.05, correction=False)
    onehot = theory.predict(task, student, "onehot", gamma=0.05, correction=False)
    assert half.sigma2.value == pytest.approx(0.5 * onehot.sigma2.value, rel=1e-12)
    assert half.sigma2_closed_form is None  # no cov_form declared: no closed form, and nothing claims one
    mixed = theory.predict(task, student, Mixture(0.5, HalfLabel()), gamma=0.05, correction=False)
    # (1-l)^2 + l^2/2 + 2 l (1-l)/2 = 0.625 of onehot at lam = 0.5 (E20 with the cross covariance)
    assert mixed.sigma2.value == pytest.approx(0.625 * onehot.sigma2.value, rel=1e-12)


def test_user_law_runs_and_its_spec_names_it():
    task = synthetic.make_task("triangle")
    run = sgd.run(task, Linear(task, dtype=F64), HalfLabel(), gamma=0.05, steps=200, chains=3, eval_every=100)
    assert run.config["teacher"] == "user_extensions:HalfLabel"
    assert isinstance(parse_teacher("user_extensions:HalfLabel"), HalfLabel)
    assert np.all(np.isfinite(run.values("sigma2_at_optimum")[1]))


def test_user_task_runs_with_a_module_student():
    task = Stripes()
    assert task.check_bcp(n=20_000, rng=3)["max_abs_z"] <= 4.0  # the BCPs are the law of y | x
    student = ModuleStudent(small_mlp(2, 3), dtype=F64)
    run = sgd.run(task, student, "onehot", gamma=0.05, steps=300, chains=4, init="random", eval_every=100)
    _, risk = run.values("excess_risk")
    assert np.all(np.isfinite(risk)) and risk[-1].mean() < risk[0].mean()
    assert run.config["task"] == "stripes"


def test_cli_takes_user_objects_by_module_path(capsys):
    argv = ["run", "--task", "user_extensions:Stripes", "--student", "user_extensions:small_mlp", "--teacher",
            "user_extensions:HalfLabel", "--init", "random", "--steps", "30", "--chains", "2", "--eval-every", "10",
            "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["student"] == "user_extensions:small_mlp" and out["config"]["teacher"] == "user_extensions:HalfLabel"
    assert cli.main(["run", "--student", "user_extensions:nothing", "--steps", "2"]) == 2
    assert "no attribute" in capsys.readouterr().err


def test_gradient_noise_of_chain_0_does_not_depend_on_the_number_of_chains(capsys):
    def measured(chains: int) -> dict:
        argv = ["run", "--teacher", "onehot", "--steps", "50", "--eval-every", "25", "--chains", str(chains), "--json"]
        assert cli.main(argv) == 0
        return json.loads(capsys.readouterr().out)

    one, eight = measured(1), measured(8)
    # the stored table: chain 0's values of the gradient instruments are the same bits in both runs
    r1 = sgd.run(teacher="onehot", steps=50, eval_every=25, chains=1)
    r8 = sgd.run(teacher="onehot", steps=50, eval_every=25, chains=8)
    for q in ("grad_second_moment", "grad_cov_trace", "sigma2_at_optimum"):
        np.testing.assert_array_equal(r1.values(q)[1][:, 0], r8.values(q)[1][:, 0])
    assert one["measured"]["chains"] == 1 and eight["measured"]["chains"] == 8
