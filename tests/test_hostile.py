"""Hostile and careless input (issue 14): every failure class, each case as data.

Every case goes through `cli.main`, the one error boundary (or the Python API), and asserts the
exit code, that the message names the parameter, and that no traceback escapes or is printed.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import synthetic
from bkd_theory import cli, sgd, sweep, teachers
from bkd_theory.reproduce import base as figbase

TINY = ["--steps", "20", "--chains", "2", "--eval-every", "10", "--eval-n", "50"]
DEEP = "mc:2:" * 2000 + "bcp"
BASE = 'predict = false\n[base]\ntask = "triangle"\nsteps = 20\nchains = 2\neval_every = 10\neval_n = 50\n'


def bkd(capsys, argv: list) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `bkd argv`; an exception escaping `main` fails the test."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors (exit 2, naming the flag)
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def strict(text: str):
    def bare(token):
        raise AssertionError(f"{token} is not strict JSON")
    return json.loads(text, parse_constant=bare)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "store").mkdir()
    return tmp_path


def toml(tmp: Path, text: str) -> Path:
    path = tmp / "s.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- CLI bad input -> exit 2, naming the parameter
CLI = [
    ("out is a file", lambda t: ["run", *TINY, "--out", t / "afile"], "--out"),
    ("out under a file", lambda t: ["run", *TINY, "--out", t / "afile" / "sub"], "--out"),
    ("csv is a directory", lambda t: ["sweep", "--collect", t / "store", "--csv", t], "--csv"),
    ("reproduce out is a file", lambda t: ["reproduce", "--quick", "--only", "F2", "--out", t / "afile"], "--out"),
    ("teacher nested 2000 deep", lambda t: ["run", "--teacher", DEEP], "teacher"),
    ("momentum range", lambda t: ["run", "--momentum", "2"], "momentum must be in [0, 1)"),
    ("n-mc names n_mc", lambda t: ["predict", "--task", "hetero", "--features", "quadratic", "--n-mc", "3"], "n_mc"),
    ("chains not an integer", lambda t: ["run", "--chains", "1.5"], "--chains"),
    ("check --only ,", lambda t: ["check", "--only", ","], "only"),
]


@pytest.mark.parametrize("argv, name", [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_cli_bad_input_exits_2_naming_the_parameter(capsys, tmp, argv, name):
    code, out, err = bkd(capsys, argv(tmp))
    assert code == 2 and name in err, err


def test_unreachable_scheduler_exits_2(capsys, tmp, monkeypatch):
    monkeypatch.setattr(sweep.execute, "CONNECT_TIMEOUT", 1)
    code, out, err = bkd(capsys, ["sweep", toml(tmp, BASE), "--out", tmp / "o", "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2 and "scheduler 'tcp://127.0.0.1:9'" in err, err


# ---------------------------------------------------------------- Python API bad input -> ValueError
TRI = synthetic.make_task("triangle")
API = [
    ("bool for a number", lambda: sgd.run(gamma=True, steps=2, chains=1), "gamma"),
    ("momentum 1", lambda: sgd.RunConfig(momentum=1.0), "[0, 1)"),
    ("negative seed", lambda: TRI.sample(5, -1), "rng"),
    ("teacher nested 2000 deep", lambda: teachers.parse_teacher(DEEP), "teacher"),
    ("bool in a sweep", lambda: sweep.SweepSpec.from_dict({"base": {"gamma": True}}), "gamma"),
    ("too much work", lambda: sgd.run(chains=10**6, steps=10**10), "--max-chain-steps"),
]


@pytest.mark.parametrize("thunk, name", [c[1:] for c in API], ids=[c[0] for c in API])
def test_api_bad_input_raises_value_error_naming_the_parameter(thunk, name):
    with pytest.raises(ValueError, match=None) as exc:
        thunk()
    assert name in str(exc.value)


# ---------------------------------------------------------------- divergence recorded with its step
DIVERGE = [("paper 1e150", ["--task", "paper", "--gamma", "1e150"]),
           ("triangle 1e150 from theta*", ["--gamma", "1e150", "--init", "optimum"]),
           ("triangle onehot 1e8", ["--teacher", "onehot", "--gamma", "1e8"])]


@pytest.mark.parametrize("argv", [c[1] for c in DIVERGE], ids=[c[0] for c in DIVERGE])
def test_a_finite_blow_up_is_reported_as_diverged_with_its_step(capsys, argv):
    code, out, err = bkd(capsys, ["run", *argv, *TINY, "--json"])
    m = strict(out)["measured"]
    assert code == 0 and m["diverged_chains"] == 2 and m["surviving_chains"] == 0
    assert all(1 <= s <= 20 for s in m["diverged_step"]) and all(m["diverged_reason"])
    assert "diverged" in m["note"] and m["excess_risk"] is None and m["excess_risk_stationary"] is None


def test_plain_output_says_diverged_not_stationary(capsys):
    code, out, err = bkd(capsys, ["run", "--task", "paper", "--gamma", "1e150", *TINY])
    assert code == 0 and "diverged chains: 2 / 2" in out and "diverged at steps [1, 1]" in out
    assert " stationary" not in out.replace("NOT stationary", "")


def test_a_sweep_records_diverged_cells_and_goes_on(capsys, tmp):
    store = tmp / "o"
    code, out, err = bkd(capsys, ["sweep", toml(tmp, BASE + "[grid]\ngamma = [1e150, 0.1]\n"), "--out", store])
    cells = {c["config"]["gamma"]: c for c in map(json.loads, map(Path.read_text, store.glob("*.json")))}
    assert code == 0 and cells[1e150]["status"] == "diverged" and cells[0.1]["status"] == "ok"
    assert cells[1e150]["measured"]["diverged_step"] == [1, 1] and cells[0.1]["measured"]["diverged_step"] == [-1, -1]
    table = sweep.collect(store)
    assert set(table["measured.diverged_step"]) == {"[1, 1]", "[-1, -1]"}


def test_summary_of_a_partly_diverged_run_uses_the_survivors():
    run = sgd.run(task="triangle", student="mlp:16:relu", teacher="onehot", gamma=0.65, init="random", steps=300,
                  dtype="float32", eval_every=50, chains=16)
    s = run.summary()
    survivors = s["surviving_chains"]
    assert 0 < survivors < 16 and f"over the {survivors} surviving chains" in s["note"]
    assert s["quantities"]["excess_risk"]["chains"] == survivors


# ---------------------------------------------------------------- sweep TOML validated before work
TOML = [
    ("bool for a number", BASE + "gamma = true\n", "gamma"),
    ("bool seed", "seeds = [true]\n" + BASE, "seed"),
    ("64M cells", BASE + "[grid]\n" + "".join(f"{k} = [{', '.join(map(str, range(1, 401)))}]\n"
                                              for k in ("seed", "eval_n", "first_chain")), "--max-cells"),
    ("nested arrays", BASE + "[grid]\ngamma = " + "[" * 3000 + "0.1" + "]" * 3000 + "\n", "gamma"),
    ("finite n 1e12", BASE + 'regime = "finite"\nn = 1_000_000_000_000\n', "memory"),
    ("typo in the last teacher", BASE + '[grid]\nteacher = ["bcp", "dirichlet:-5"]\n', "dirichlet:-5"),
]


@pytest.mark.parametrize("text, name", [c[1:] for c in TOML], ids=[c[0] for c in TOML])
def test_sweep_files_are_validated_before_any_work(capsys, tmp, text, name):
    code, out, err = bkd(capsys, ["sweep", toml(tmp, text), "--out", tmp / "o"])
    assert code == 2 and name in err and not list((tmp / "o").glob("*.json")), err


def test_terminal_escapes_are_stripped_from_the_name(capsys, tmp):
    code, out, err = bkd(capsys, ["sweep", toml(tmp, 'name = "\\u001b]0;pwned\\u0007x\\u001b[31m"\n' + BASE), "--out",
                                  tmp / "o", "--dry-run"])
    assert code == 0 and out.startswith("x: 1 cells") and "\x1b" not in out + err and "\x07" not in out


# ---------------------------------------------------------------- corrupt cells, concurrent sweeps, --collect
def two_cells(capsys, tmp: Path) -> tuple[Path, Path, list[Path]]:
    path, store = toml(tmp, BASE + "[grid]\ngamma = [0.1, 0.2]\n"), tmp / "o"
    assert bkd(capsys, ["sweep", path, "--out", store])[0] == 0
    return path, store, sorted(store.glob("*.json"))


CORRUPT = [("{}", lambda f: "{}"), ("[]", lambda f: "[]"), ("truncated", lambda f: f[0].read_text()[:50]),
           ("another cell's contents", lambda f: f[1].read_text()),
           ("config tampered", lambda f: json.dumps({**json.loads(f[0].read_text()),
                                                      "config": {**json.loads(f[0].read_text())["config"], "gamma": 0.3}}))]


@pytest.mark.parametrize("contents", [c[1] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
def test_a_corrupt_cell_is_recomputed_with_a_warning(capsys, tmp, contents):
    path, store, files = two_cells(capsys, tmp)
    files[0].write_text(contents(files))
    code, out, err = bkd(capsys, ["sweep", path, "--out", store, "--json"])
    assert code == 0 and strict(out)["computed"] == 1 and f"cell {files[0].stem}" in err
    assert json.loads(files[0].read_text())["hash"] == files[0].stem


@pytest.mark.parametrize("contents", ["[]", "{", "[" * 100_000], ids=["list", "truncated", "nested too deeply"])
def test_collect_reports_unreadable_cells(capsys, tmp, contents):
    path, store, files = two_cells(capsys, tmp)
    files[0].write_text(contents)
    code, out, err = bkd(capsys, ["sweep", "--collect", store])
    assert code == 1 and files[0].name in err and len(out.strip().splitlines()) == 2  # header + the good cell


def test_a_cell_claimed_by_another_sweep_is_left_to_it(capsys, tmp):
    path, store = toml(tmp, BASE + "[grid]\ngamma = [0.1, 0.2]\n"), tmp / "o"
    other = sweep.Store(store).claim(sweep.load_spec(path).configs[0].config_hash())  # as a live process holds it
    code, out, err = bkd(capsys, ["sweep", path, "--out", store, "--json"])
    report = strict(out)
    assert code == 0 and report["computed"] == 1 and report["elsewhere"] == 1
    other.release()
    assert strict(bkd(capsys, ["sweep", path, "--out", store, "--json"])[1])["computed"] == 1


def test_a_sweep_with_an_errored_cell_exits_1_after_the_others(capsys, tmp):
    path = toml(tmp, BASE.replace("triangle", "hetero") + '[grid]\ninit = ["perturbed", "zero"]\n')  # perturbed needs theta*
    code, out, err = bkd(capsys, ["sweep", path, "--out", tmp / "o"])
    assert code == 1 and "1 errors" in out and len(list((tmp / "o").glob("*.json"))) == 2
    code, out, err = bkd(capsys, ["sweep", path, "--out", tmp / "o"])
    assert code == 1 and "status error" in out


def test_an_interrupted_save_leaves_the_previous_record_or_none(tmp, monkeypatch):
    import os

    from bkd_theory import records

    sgd.run(steps=20, chains=2, eval_every=10, eval_n=50).save(tmp / "r")
    new, real, calls = sgd.run(steps=30, chains=2, eval_every=10, eval_n=50), os.replace, []

    def interrupted_replace(src, dst):  # Ctrl-C between two renames, the narrowest window
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(src, dst)
    monkeypatch.setattr(records.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp / "r")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="no run.json"):  # not a mixture of the two records
        records.Run.load(tmp / "r")
    assert not [p for p in (tmp / "r").iterdir() if p.name.startswith(".")]
    new.save(tmp / "r")
    (tmp / "r" / "theta_final.csv").write_text("0,0\n")
    with pytest.raises(ValueError, match="theta_final.csv does not match"):
        records.Run.load(tmp / "r")


# ---------------------------------------------------------------- reproduce interrupted, then re-run
def fake_figure(fig_id: str, interrupt: bool = False) -> figbase.Figure:
    """A registered-figure stand-in: instant, with a frame whose CSV export can be interrupted."""
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")

    class Frame(pd.DataFrame):
        def to_csv(self, *a, **k):
            if interrupt:
                raise KeyboardInterrupt
            return pd.DataFrame(self).to_csv(*a, **k)

    frame = Frame({"panel": [1], "series": ["a"], "kind": ["m"], "x": [0.0], "value": [1.0], "se": [0.1]})
    return figbase.Figure(fig_id, f"title {fig_id}", "summary", 0, (), lambda quick: {"quick": quick},
                          lambda s: figbase.Result(frame=frame), lambda r, s: plt.subplots()[0])


@pytest.fixture
def figures(monkeypatch, tmp):
    """`bkd reproduce` over fake figures F2 and F3 in tmp/figs, with an older full-mode F2 already there."""
    import bkd_theory.reproduce as rep

    figs = {"F2": fake_figure("F2"), "F3": fake_figure("F3")}
    monkeypatch.setattr(rep, "select", lambda ids=None: [figs[i.upper()] for i in (ids or figs)])
    figbase.write(figs["F2"], figs["F2"].measure({}), {}, tmp / "figs", quick=False)
    return figs


def test_a_partial_reproduce_over_an_older_folder_records_each_figures_mode(capsys, tmp, figures):
    code, out, err = bkd(capsys, ["reproduce", "--quick", "--only", "F3", "--out", tmp / "figs"])
    rows = {line[2:4]: line for line in (tmp / "figs" / "README.md").read_text().splitlines() if line.startswith("| F")}
    assert code == 0 and "F3: " in out and "| full |" in rows["F2"] and "| quick |" in rows["F3"]


def test_an_interrupted_reproduce_exits_130_and_keeps_the_previous_files(capsys, tmp, figures):
    before = {p.name: p.read_bytes() for p in (tmp / "figs").iterdir()}
    figures["F2"] = fake_figure("F2", interrupt=True)
    code, out, err = bkd(capsys, ["reproduce", "--quick", "--only", "F2", "--out", tmp / "figs"])
    assert code == 130 and "interrupted; every figure finished before it is kept" in err
    assert {p.name: p.read_bytes() for p in (tmp / "figs").iterdir()} == before  # no temporary file left either


def test_reproduce_names_unknown_figures(capsys, tmp):
    code, out, err = bkd(capsys, ["reproduce", "--only", "F99", "--out", tmp / "figs"])
    assert code == 2 and "F99" in err


# ---------------------------------------------------------------- resource limits
RESOURCES = [
    ("chains x steps", ["run", "--chains", "1e6", "--steps", "1e10"], "--max-chain-steps"),
    ("mc:1e12", ["run", "--teacher", "mc:1e12:bcp", *TINY], "teacher mc:1e12:bcp"),
    ("nested mc", ["run", "--teacher", "mc:1000:mc:1000:mc:1000:bcp", *TINY], "--max-memory"),
    ("1e8-wide MLP", ["run", "--task", "paper", "--student", "mlp:100000000", "--init", "random", *TINY],
     "student mlp:100000000"),
    ("eval_n 1e10", ["run", *TINY[:4], "--eval-n", "1e10"], "eval_n"),
    ("predict n 1e12", ["predict", "--n", "1e12"], "n = 1e+12"),
    ("bad --max-memory", ["run", *TINY, "--max-memory", "lots"], "--max-memory"),
]


@pytest.mark.parametrize("argv, name", [c[1:] for c in RESOURCES], ids=[c[0] for c in RESOURCES])
def test_work_above_the_limits_is_refused_with_the_estimate(capsys, argv, name):
    code, out, err = bkd(capsys, argv)
    assert code == 2 and name in err, err


def test_force_overrides_the_limits(capsys):
    assert bkd(capsys, ["run", *TINY, "--max-chain-steps", "10"])[0] == 2
    assert bkd(capsys, ["run", *TINY, "--max-chain-steps", "10", "--force"])[0] == 0


def test_predict_monte_carlo_memory_does_not_grow_with_n_mc():
    from bkd_theory.theory import integrate

    integ = integrate.monte_carlo(synthetic.make_task("hetero"), 10**12, seed=0)  # nothing of size 1e12 is drawn
    assert integ.size == 10**12 and integ.chunks is not None and len(integ.nodes) <= integrate.CHUNK


# ---------------------------------------------------------------- the smaller failures
def test_hetero_log_bcp_is_overflow_safe():
    p = synthetic.make_task("hetero").bcp(np.array([[1e160, 0.0], [0.0, -1e160], [1e300, 1e300]]))
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1.0)


@pytest.mark.parametrize("name", ["paper", "triangle", "hetero", "teacher-net"])
def test_sample_takes_an_int_seed(name):
    x, y = synthetic.make_task(name).sample(5, 42)
    np.testing.assert_array_equal(x, synthetic.make_task(name).sample(5, np.random.default_rng(42))[0])


def test_control_characters_never_reach_the_terminal(capsys):
    code, out, err = bkd(capsys, ["run", "--teacher", "\x1b[31mred\x07"])
    assert code == 2 and "teacher" in err and "\x1b" not in err and "\x07" not in err


@pytest.mark.parametrize("exc, code, words", [(KeyboardInterrupt, 130, "interrupted; the run had not finished"),
                                              (RuntimeError("boom"), 3, "internal error: RuntimeError: boom"),
                                              (MemoryError("big"), 2, "out of memory")],
                         ids=["ctrl-c", "a bug", "memory"])
def test_the_error_boundary(capsys, monkeypatch, exc, code, words):
    def raise_(*a, **k):
        raise exc
    monkeypatch.setattr(sgd, "run", raise_)
    got, out, err = bkd(capsys, ["run", *TINY])
    assert got == code and words in err, err
    with pytest.raises(type(exc) if isinstance(exc, BaseException) else exc):
        cli.main(["--debug", "run", *TINY])


def test_a_closed_pipe_exits_quietly():
    bkd_exe = Path(sys.executable).with_name("bkd")  # `true` exits at once: the pipe is closed before bkd writes
    p = subprocess.run(f"'{bkd_exe}' info | true; exit ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 141 and p.stderr == ""


def test_strict_json_lists_what_is_not_finite(capsys):
    code, out, err = bkd(capsys, ["run", "--task", "paper", "--gamma", "1e150", *TINY, "--json"])
    doc = strict(out)
    assert code == 0 and doc["nonfinite"]["measured.excess_risk"] == "nan" and not math.isnan(doc["wall_time"])
