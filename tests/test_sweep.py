"""Sweeps: grid expansion, hashing, the atomic resumable store, collect, and local == dask."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bkd_theory import sweep
from bkd_theory.cli import main
from bkd_theory.sgd import RunConfig

REPO = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny"
seeds = [0, 1]
[base]
task = "triangle"
student = "linear"
steps = 200
chains = 8
eval_every = 50
eval_n = 500
[grid]
teacher = ["onehot", "bcp", "dirichlet:5"]
gamma = [0.05, 0.2]
[[cells]]
teacher = "additive:0.01"
gamma = 0.1
"""


def fake_cell(config: RunConfig) -> dict:
    """A stand-in for `run_cell`: instant, pure, with the same record layout."""
    return {"measured": {"excess_risk": config.gamma * (config.seed + 1), "excess_risk_se": config.gamma / 10},
            "predicted": {"neighborhood_excess_risk": config.gamma / 4}}


class Counting:
    """Records which cells ran; raises `exc` on call number `fail_at` (1-based), or for `fail_teacher`."""

    def __init__(self, fail_at: int | None = None, exc: type[BaseException] = KeyboardInterrupt,
                 fail_teacher: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_at, self.exc, self.fail_teacher = fail_at, exc, fail_teacher

    def __call__(self, config: RunConfig) -> dict:
        self.calls.append(config.config_hash())
        if len(self.calls) == self.fail_at or config.teacher == self.fail_teacher:
            raise self.exc("cell exploded")
        return fake_cell(config)


@pytest.fixture
def tiny(tmp_path: Path) -> sweep.SweepSpec:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return sweep.load_spec(path)


def test_grid_expansion_and_hashes(tiny: sweep.SweepSpec) -> None:
    assert tiny.name == "tiny"
    assert len(tiny.configs) == (3 * 2 + 1) * 2  # grid product + one extra cell, times two seeds
    assert len({c.config_hash() for c in tiny.configs}) == len(tiny.configs)
    assert {(c.teacher, c.gamma, c.seed) for c in tiny.configs} >= {("dirichlet:5", 0.2, 1), ("additive:0.01", 0.1, 0)}
    assert all(c.steps == 200 and c.chains == 8 for c in tiny.configs)
    # a [[cells]] entry equal to a grid point is the same cell; list values in [[cells]] form a sub-grid
    spec = sweep.SweepSpec.from_dict({"grid": {"gamma": [0.1, 0.2]}, "cells": [{"gamma": 0.1}, {"gamma": [0.3, 0.4]}]})
    assert [c.gamma for c in spec.configs] == [0.1, 0.2, 0.3, 0.4]
    # seed as a grid field; equal configs hash equal, any changed field changes the hash
    spec = sweep.SweepSpec.from_dict({"grid": {"seed": [0, 1, 2]}})
    assert [c.seed for c in spec.configs] == [0, 1, 2]
    config = RunConfig(teacher="dirichlet:5", gamma=0.1)
    assert RunConfig.from_dict(config.to_dict()).config_hash() == config.config_hash()
    assert config.replace(gamma=0.1000001).config_hash() != config.config_hash()


@pytest.mark.parametrize("doc, match", [
    ({"grid": {"gamm": [0.1]}}, r"unknown RunConfig field 'gamm' in \[grid\]; allowed: .*gamma"),
    ({"base": {"techer": "bcp"}}, r"'techer' in \[base\]"),
    ({"cells": [{"stepz": 3}]}, r"'stepz' in \[\[cells\]\] #1"),
    ({"grids": {}}, r"unknown sweep key\(s\) \['grids'\]"),
    ({"grid": {"gamma": 0.1}}, r"\[grid\] gamma must be a non-empty list"),
    ({"seeds": [0], "grid": {"seed": [1]}}, r"seed is given both"),
    ({"grid": {"gamma": [0.1, -1.0]}}, r"gamma"),
    ({"grid": {"teacher": ["bcp", "dirichlet:5", "nonsense:1"]}}, r"nonsense"),
    ({"base": {"task": "nosuchtask"}}, r"nosuchtask"),
    ({"base": {"student": "cnn"}}, r"cnn"),
])
def test_bad_spec_fails_before_any_work(doc: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sweep.SweepSpec.from_dict(doc)


def test_malformed_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[grid]\ngamma = [0.1, \n")
    with pytest.raises(ValueError, match="malformed TOML"):
        sweep.load_spec(path)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_atomic_write_and_leftovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = sweep.Store(tmp_path)
    store.write({"hash": "0123456789abcdef", "status": "ok", "measured": {"x": float("nan")}})
    # leftovers of a writer killed before its rename are not cells
    (tmp_path / ".fedcba9876543210.abc.tmp").write_text('{"hash": "fedcba9876543210", "stat')
    (tmp_path / "notes.json").write_text("{}")
    assert store.keys() == ["0123456789abcdef"]
    assert "fedcba9876543210" not in store
    # a failed rename leaves neither the target nor the temporary file
    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        store.write({"hash": "1111111111111111", "status": "ok"})
    assert "1111111111111111" not in store
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fedcba9876543210.abc.tmp", "0123456789abcdef.json",
                                                          "notes.json"]


def test_resume_recomputes_only_missing_cells(tiny: sweep.SweepSpec, tmp_path: Path) -> None:
    out = tmp_path / "store"
    first = Counting()
    report = sweep.run_sweep(tiny, out, cell_fn=first, progress=False)
    assert (report.computed, report.skipped) == (14, 0) and len(first.calls) == 14
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    victim = tiny.configs[5].config_hash()
    sweep.Store(out).path(victim).unlink()
    again = Counting()
    report = sweep.run_sweep(tiny, out, cell_fn=again, progress=False)
    assert again.calls == [victim] and (report.computed, report.skipped) == (1, 13)
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in out.iterdir() if p.name != f"{victim}.json")


def test_interrupted_sweep_keeps_finished_cells(tiny: sweep.SweepSpec, tmp_path: Path) -> None:
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(tiny, out, cell_fn=Counting(fail_at=3), progress=False)
    assert sweep.Store(out).keys() == sorted(c.config_hash() for c in tiny.configs[:2])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    rest = Counting()
    sweep.run_sweep(tiny, out, cell_fn=rest, progress=False)
    assert rest.calls == [c.config_hash() for c in tiny.configs[2:]]


def test_killed_cli_sweep_resumes_without_recomputing(tmp_path: Path) -> None:
    """SIGKILL a real `bkd sweep` after two cells are stored; the rerun computes only the others.
    The killed process named its cells by hash; so this also shows hashes agree across processes."""
    path = tmp_path / "kill.toml"
    path.write_text("predict = false\n[base]\nsteps = 1500\nchains = 8\neval_every = 500\neval_n = 200\n"
                    f"[grid]\nseed = {list(range(12))}\n")
    out, spec = tmp_path / "out", sweep.load_spec(path)
    proc = subprocess.Popen([sys.executable, "-m", "bkd_theory.cli", "sweep", str(path), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(sweep.Store(out).keys()) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    stored = sweep.Store(out).keys()
    assert 2 <= len(stored) < len(spec.configs)  # killed partway
    assert set(stored) <= {c.config_hash() for c in spec.configs}  # same config -> same hash in both processes
    assert all(sweep.Store(out).read(k)["status"] == "ok" for k in stored)
    stamps = {k: sweep.Store(out).path(k).stat().st_mtime_ns for k in stored}
    rest = Counting()
    sweep.run_sweep(spec, out, cell_fn=rest, progress=False)
    assert rest.calls == [c.config_hash() for c in spec.configs if c.config_hash() not in stored]
    assert all(sweep.Store(out).path(k).stat().st_mtime_ns == t for k, t in stamps.items())


def test_error_cells_are_recorded_and_the_sweep_goes_on(tiny: sweep.SweepSpec, tmp_path: Path) -> None:
    out = tmp_path / "store"
    report = sweep.run_sweep(tiny, out, cell_fn=Counting(exc=RuntimeError, fail_teacher="bcp"), progress=False)
    assert (report.computed, report.errors) == (14, 4)
    bad = [r for r in sweep.Store(out).records() if r["status"] == "error"]
    assert {r["config"]["teacher"] for r in bad} == {"bcp"}
    assert all(r["message"] == "RuntimeError: cell exploded" and r["measured"] is None for r in bad)
    assert sweep.run_sweep(tiny, out, cell_fn=Counting(), progress=False).computed == 0
    retry = Counting()
    report = sweep.run_sweep(tiny, out, cell_fn=retry, retry_errors=True, progress=False)
    assert len(retry.calls) == 4 and report.errors == 0


def test_collect_gives_one_tidy_table(tiny: sweep.SweepSpec, tmp_path: Path) -> None:
    out = tmp_path / "store"
    sweep.run_sweep(tiny, out, cell_fn=Counting(exc=RuntimeError, fail_teacher="onehot"), progress=False)
    table = sweep.collect(out, csv=tmp_path / "t.csv")
    assert len(table) == 14 and table["hash"].is_unique
    for col in ("hash", "status", "message", "wall_time", "version", "teacher", "gamma", "seed", "steps",
                "measured.excess_risk", "measured.excess_risk_se", "predicted.neighborhood_excess_risk"):
        assert col in table, col
    ok = table[table.status == "ok"]
    assert (ok["measured.excess_risk"] == ok.gamma * (ok.seed + 1)).all()
    assert table.loc[table.status == "error", "measured.excess_risk"].isna().all()
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == ",".join(table.columns)
    # Run.summary() layout: estimates under "quantities" become name, name_se, ...; lists are left out
    row: dict = {}
    summary = {"quantities": {"dist2": {"window": [0, 9], "value": 1.0, "se": 0.1}}, "chains": 8, "x": {"y": 2}}
    sweep.store._flatten("measured", sweep.store._hoist(summary), row)
    assert row == {"measured.dist2": 1.0, "measured.dist2_se": 0.1, "measured.chains": 8, "measured.x.y": 2}


def test_cli_sweep_dry_run_run_and_collect(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "one.toml"
    path.write_text('predict = false\n[base]\nsteps = 100\nchains = 4\neval_every = 50\neval_n = 200\n'
                    '[grid]\nteacher = ["bcp", "onehot"]\n')
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--dry-run"]) == 0
    assert "2 cells, 0 stored" in capsys.readouterr().out and not out.exists()
    assert main(["sweep", str(path), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["computed"] == 2
    assert main(["sweep", "--collect", str(out), "--csv", str(tmp_path / "t.csv")]) == 0
    assert "2 cells" in capsys.readouterr().out
    assert (sweep.collect(out).status == "ok").all()
    assert main(["sweep", "--collect", str(tmp_path / "nope")]) == 2


def test_noise_sweep_file_is_valid() -> None:
    spec = sweep.load_spec(REPO / "sweeps" / "noise.toml")
    teachers = {c.teacher for c in spec.configs}
    assert {"onehot", "bcp"} <= teachers
    assert any(t.startswith("dirichlet:") for t in teachers) and any(t.startswith("additive:") for t in teachers)
    assert {c.task for c in spec.configs} == {"triangle"} and len({c.gamma for c in spec.configs}) >= 2


def test_dask_equals_local_bit_for_bit(tmp_path: Path) -> None:
    """Real runs: a LocalCluster with 2 worker processes stores exactly the local executor's values."""
    spec = sweep.SweepSpec.from_dict({
        "seeds": [0, 1],
        "base": {"task": "triangle", "student": "linear", "steps": 200, "chains": 8, "eval_every": 50,
                 "eval_n": 500, "gamma": 0.2},
        "grid": {"teacher": ["onehot", "dirichlet:5"]}})
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert sweep.run_sweep(spec, local, progress=False).computed == 4
    assert sweep.run_sweep(spec, dask, executor="dask", workers=2, progress=False).computed == 4
    a, b = ({r["hash"]: r for r in sweep.Store(d).records()} for d in (local, dask))
    assert a.keys() == b.keys() == {c.config_hash() for c in spec.configs}
    for key in a:
        assert a[key]["status"] == "ok", a[key].get("message")
        assert a[key]["measured"]["quantities"]["excess_risk"]["value"] > 0
        # compared as JSON text so NaN == NaN; floats round-trip exactly through JSON
        for field in ("measured", "predicted", "prediction_error", "config"):
            assert json.dumps(a[key][field], sort_keys=True) == json.dumps(b[key][field], sort_keys=True), field
