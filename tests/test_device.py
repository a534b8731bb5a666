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


# ---------------------------------------------------------------- bkd reproduce --device
def test_figure_runs_take_the_device_of_the_block():
    from bkd_theory.claims import recipes

    cfg = dict(RUN, student="linear", instruments=("excess_risk",))
    assert recipes.run_config(cfg)["device"] == "cpu"
    with recipes.on_device("CPU") as name:
        assert name == "cpu" and recipes.run_config(cfg)["device"] == "cpu"
    token = recipes._DEVICE.set("cuda:1")  # what on_device sets on a machine with two GPUs
    try:
        assert recipes.run_config(cfg)["device"] == "cuda:1"
        assert recipes.run_config({**cfg, "device": "cpu"})["device"] == "cpu"  # a configuration's own device wins
    finally:
        recipes._DEVICE.reset(token)
    assert recipes.run_config(cfg)["device"] == "cpu"


def test_make_runs_the_figure_on_its_device_and_records_it(monkeypatch, tmp_path):
    """`reproduce.make` measures a figure inside `on_device`: the figure's runs see the device (here
    a stand-in GPU, its presence check switched off), the written JSON gets it, and after the figure
    the runs are back on the CPU."""
    import bkd_theory.reproduce as rep
    from bkd_theory.claims import recipes
    from bkd_theory.engine import config as engine_config

    import dataclasses

    fig = rep.select(["F2"])[0]
    seen = []
    stand_in = dataclasses.replace(fig, measure=lambda s: seen.append(recipes._DEVICE.get()) or "result")
    monkeypatch.setattr(rep, "select", lambda only: [stand_in])
    monkeypatch.setattr(engine_config, "check_device", lambda name: torch.device("cpu"))
    monkeypatch.setattr(rep, "write", lambda f, result, s, out, **kw: (seen.append(kw["device"]), [])[1])
    assert rep.make("F2", True, tmp_path, device="CUDA:1") == ([], "result")
    assert seen == ["cuda:1", "cuda:1"] and recipes._DEVICE.get() == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", ""] + ([] if CUDA else ["cuda"]))
def test_reproduce_refuses_a_bad_or_absent_device_before_any_work(tmp_path, capsys, bad):
    from bkd_theory.reproduce import reproduce

    with pytest.raises(ValueError, match="device"):
        reproduce(tmp_path / "figs", quick=True, only=["F2"], jobs=1, device=bad)
    assert not (tmp_path / "figs").exists()
    assert cli.main(["reproduce", "--quick", "--only", "F2", "--out", str(tmp_path / "cli"), "--device", bad]) == 2
    assert "device" in capsys.readouterr().err
    assert not list(tmp_path.glob("cli/F2.*"))


@pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")
def test_reproduce_on_cuda_records_the_device_and_matches_the_cpu(tmp_path):
    import json

    import pandas as pd

    from bkd_theory.reproduce import reproduce

    reproduce(tmp_path / "gpu", quick=True, only=["F2"], jobs=1, device="cuda")
    reproduce(tmp_path / "cpu", quick=True, only=["F2"], jobs=1)
    assert json.loads((tmp_path / "gpu" / "F2.json").read_text())["device"] == "cuda"
    assert "device" not in json.loads((tmp_path / "cpu" / "F2.json").read_text())
    g, c = pd.read_csv(tmp_path / "gpu" / "F2.csv"), pd.read_csv(tmp_path / "cpu" / "F2.csv")
    # float64 runs; only reduction orders differ between the devices
    np.testing.assert_allclose(g["value"], c["value"], rtol=1e-8, atol=1e-12)
