"""The `bkd` command (bkd_theory.cli): parsing, --json shapes, exit codes, bad input -> exit 2.

Everything goes through `cli.main(argv)` in-process; outputs are read with capsys.
"""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

from bkd_theory import cli, sgd

PREDICT_KEYS = ("sigma2", "trace_C", "H_eig_min", "H_eig_max", "kappa", "F_star", "calL", "neighborhood_excess_risk",
                "neighborhood_dist2", "bound_T3", "bound_T4", "gamma_max_T1", "gamma_max_T3", "critical_noise")


def _no_nan(token: str):
    raise AssertionError(f"{token} is not strict JSON")


def _json(capsys, argv: list[str]):
    """Run `bkd argv` (exit 0) and parse its output as strict JSON (no NaN or Infinity)."""
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out, parse_constant=_no_nan)


def _fails(capsys, argv: list[str], name: str) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bkd {argv[0]}: error:") and name in err, err
    return err


# ---------------------------------------------------------------- parsing
def test_run_flags_default_to_the_run_config():
    args = cli.build_parser().parse_args(["run"])
    defaults = sgd.RunConfig()
    for f in dataclasses.fields(sgd.RunConfig):
        assert str(getattr(args, f.name)) == str(getattr(defaults, f.name)), f.name


def test_predict_takes_the_configuration_flags_of_run():
    parser = cli.build_parser()
    run = vars(parser.parse_args(["run"]))
    predict = vars(parser.parse_args(["predict"]))
    config = {f.name for f in dataclasses.fields(sgd.RunConfig)}
    assert config <= set(run) and config <= set(predict)
    assert {k: run[k] for k in config} == {k: predict[k] for k in config}
    args = parser.parse_args(["predict", "--teacher", "dirichlet:5", "--gamma", "0.05", "--n", "1000", "--json"])
    assert (args.teacher, args.gamma, args.n, args.json) == ("dirichlet:5", 0.05, 1000, True)


def test_check_flags():
    args = cli.build_parser().parse_args(["check", "--only", "P1,T3", "--json", "--quick"])
    assert (args.only, args.json, args.quick) == ("P1,T3", True, True)


def test_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict", "--gamma", "abc"])
    assert exc.value.code == 2


# ---------------------------------------------------------------- info
def test_info_json(capsys):
    info = _json(capsys, ["info", "--json"])
    assert {"bkd_theory", "python", "numpy", "torch", "tasks"} <= set(info)
    assert [t["name"] for t in info["tasks"]] == ["paper", "triangle", "hetero", "teacher-net"]
    laws = {t["name"]: t for t in info["teachers"]}
    assert laws["dirichlet"]["params"] == ["alpha"] and laws["mixture"]["params"] == ["lam", "base"]
    assert {"students", "optimizers", "instruments", "trained teachers"} <= set(info)
    assert all(e["help"] for kind in ("tasks", "teachers", "students", "instruments") for e in info[kind])


# ---------------------------------------------------------------- run
def test_run_json_and_plain(capsys):
    argv = ["run", "--teacher", "onehot", "--gamma", "0.05", "--steps", "20", "--chains", "3", "--eval-every", "10",
            "--eval-n", "200"]
    out = _json(capsys, argv + ["--json"])
    assert {"config", "measured", "wall_time", "config_hash"} <= set(out)
    assert out["config"]["teacher"] == "onehot" and out["config"]["chains"] == 3
    assert {"excess_risk", "excess_risk_se", "dist2", "diverged_chains"} <= set(out["measured"])
    assert cli.main(argv) == 0
    assert "excess_risk" in capsys.readouterr().out


@pytest.mark.parametrize("argv, name", [
    (["run", "--gamma", "-0.1"], "gamma"),
    (["run", "--teacher", "nope"], "teacher"),
    (["run", "--chains", "0"], "chains"),
    (["run", "--task", "nope", "--steps", "2"], "task"),
])
def test_run_bad_input_exits_2(capsys, argv, name):
    _fails(capsys, argv, name)


# ---------------------------------------------------------------- predict
def test_predict_json_has_every_key_and_finite_numbers(capsys):
    out = _json(capsys, ["predict", "--task", "triangle", "--teacher", "dirichlet:5", "--gamma", "0.05", "--json"])
    for key in PREDICT_KEYS + ("gauge", "finite_n_excess_risk", "units", "notes"):
        assert key in out, key
    assert out["gauge"] == "pinned" and out["num_params"] == 6
    for key in PREDICT_KEYS:
        if out[key] is None:  # refused, with the reason: gamma=0.05 is outside T3's and T4's step-size range
            assert key in ("bound_T3", "bound_T4") and any(n.startswith(key) for n in out["notes"]), key
        else:
            assert math.isfinite(out[key]) and out[key] >= 0, key
    assert out["finite_n_excess_risk"] is None  # no --n
    assert out["gamma_max_T3"] < 0.05 < out["gamma_max_T1"]


def test_predict_json_inside_the_admissible_range_with_n(capsys):
    out = _json(capsys, ["predict", "--task", "triangle", "--teacher", "dirichlet:5", "--gamma", "0.002", "--n", "1000",
                         "--json"])
    for key in PREDICT_KEYS + ("finite_n_excess_risk",):
        assert math.isfinite(out[key]) and out[key] > 0, key
    # E18 with C = H / (1 + alpha): tr(H^-1 C) / (2n) = P / (2 n (1 + alpha)) (H and C on the same inputs)
    assert out["finite_n_excess_risk"] == pytest.approx(6 / (2 * 1000 * 6), rel=1e-9)
    assert out["calL_n"] == 1000 and out["n"] == 1000


def test_predict_plain_table_has_units(capsys):
    assert cli.main(["predict", "--teacher", "onehot", "--gamma", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "gauge=pinned" in out
    for row in ("sigma2", "H_eig_min", "kappa", "calL", "neighborhood_excess_risk", "critical_noise"):
        assert row in out
    assert "nat/param^2" in out and "param^2" in out


@pytest.mark.parametrize("argv, name", [
    (["predict", "--gamma", "-0.05"], "gamma"),
    (["predict", "--teacher", "unknown:3"], "teacher"),
    (["predict", "--task", "nope"], "task"),
    (["predict", "--batch", "0"], "batch"),
    (["predict", "--momentum", "1.0"], "momentum"),
    (["predict", "--student", "cnn"], "student"),
])
def test_predict_bad_input_exits_2(capsys, argv, name):
    _fails(capsys, argv, name)


# ---------------------------------------------------------------- check
def test_check_only_json(capsys):
    records = _json(capsys, ["check", "--only", "P2,P1", "--json"])
    assert [r["claim"] for r in records] == ["P1", "P2"]
    assert [r["verdict"] for r in records] == ["agrees", "holds"]
    assert {"claim", "kind", "statement", "configuration", "predicted", "predicted_se", "measured", "measured_se", "z",
            "ratio", "verdict", "detail", "seconds"} <= set(records[0])


def test_check_quick_plain_table(capsys):
    assert cli.main(["check", "--quick"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for col in ("claim", "configuration", "predicted", "measured", "z", "verdict"):
        assert col in lines[0]
    assert any(line.startswith("P3-additive") for line in lines) and "5/5 claims without a failed verdict" in lines[-1]


@pytest.mark.parametrize("argv", [["check", "--only", "P1,Q7"], ["check", "--only", "T1", "--quick"]])
def test_check_bad_input_exits_2(capsys, argv):
    _fails(capsys, argv, "only")
