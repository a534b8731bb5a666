"""The `device` option: validated by name, absent devices refused with a clear error, the CPU path
unchanged, and (where a CUDA device exists) a CUDA run reproducible and equal to the CPU run to rounding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bkd_theory import cli, sgd
from bkd_theory.engine.config import RunConfig, check_device

CUDA = torch.cuda.is_available()
RUN = dict(task="triangle", teacher="dirichlet:5", steps=60, chains=3, eval_every=20, eval_n=200, dtype="float64")


@pytest.mark.parametrize("bad", ["gpu", "tpu", "cpu:1", "cuda:x", 3, None])
def test_bad_device_names_the_parameter(bad):
    with pytest.raises(ValueError, match="device"):
        RunConfig(device=bad)


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA device")
def test_an_absent_cuda_device_is_refused_before_any_work(capsys):
    with pytest.raises(ValueError, match="device='cuda'.*no CUDA device"):
        sgd.run(device="cuda", **RUN)
    assert cli.main(["run", "--device", "cuda", "--steps", "2"]) == 2
    assert "device" in capsys.readouterr().err


def test_cpu_is_the_default_and_changes_nothing():
    a, b = sgd.run(**RUN), sgd.run(device="cpu", **RUN)
    np.testing.assert_array_equal(a.theta_final, b.theta_final)
    for q in ("excess_risk", "grad_second_moment"):
        np.testing.assert_array_equal(a.values(q)[1], b.values(q)[1])
    assert RunConfig().config_hash() == RunConfig(device="cpu", feed="numpy").config_hash()
    assert RunConfig().config_hash() != RunConfig(feed="torch").config_hash()


@pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")
@pytest.mark.parametrize("student", ["linear", "mlp:16x16"])
def test_cuda_runs_are_reproducible_and_match_the_cpu_to_rounding(student):
    run = dict(RUN, student=student, feed="torch")
    g1, g2, c = sgd.run(device="cuda", **run), sgd.run(device="cuda", **run), sgd.run(**run)
    np.testing.assert_array_equal(g1.theta_final, g2.theta_final)
    # float64 on both; different reduction orders only: 60 contracting steps keep the gap near 1e-12
    np.testing.assert_allclose(g1.theta_final, c.theta_final, rtol=0, atol=1e-9)
    assert check_device("cuda").type == "cuda"
