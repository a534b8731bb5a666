"""Sweeps: a TOML grid of run configurations, a resumable store keyed by `config_hash()`, and two
executors (in-process, or `dask.distributed`).

The spec file (`bkd sweep CONFIG.toml`)::

    name = "noise"              # optional; defaults to the file's stem
    seeds = [0, 1, 2]           # optional; every cell is repeated for each seed
    predict = true              # optional; record theory.predict beside the measurement
    [base]                      # fixed RunConfig fields
    task = "triangle"
    steps = 4000
    [grid]                      # the cartesian product of these lists
    teacher = ["onehot", "bcp", "dirichlet:5"]
    gamma = [0.05, 0.1]
    [[cells]]                   # optional extra cells: base + these fields (lists give a sub-grid)
    teacher = "additive:0.01"
    gamma = 0.2

`seed` may also be a [grid] field or a [base] field, but not both there and in `seeds`. Every cell
is built and validated before any work starts: an unknown key, an unknown RunConfig field or an
out-of-range value raises `ValueError`.

The store is a directory with one JSON file per cell, `<config_hash>.json`, written atomically
(temporary file in the same directory, fsync, `os.replace`): a file is either complete or absent,
and anything else in the directory (leftover temporary files) is ignored. A cell already stored is
never run again, so an interrupted sweep resumes where it stopped. A run that raises is stored with
status "error" and its message; a run whose chains all diverged has status "diverged".

Each cell file holds: hash, status ("ok" | "diverged" | "error"), message, seed, package version,
the full config, `measured` (`Run.summary()`), `predicted` (`theory.predict`, or None with
`prediction_error` when the prediction failed), versions and wall time. `collect(DIR)` flattens
the store into one row per cell (`measured.excess_risk`, `measured.excess_risk_se`, ...).

Determinism: the cell function is pure given its configuration (all randomness comes from
`bkd_theory.rng` and the config's seed) and runs single-threaded (torch and OpenBLAS pinned to one
thread, see `threads`) under both executors, so the dask executor stores bit-for-bit the same
values as the local one. Cells are keyed by config only: after changing the code, sweep into a new
directory (or delete the store) to recompute.
"""
from __future__ import annotations

from .execute import EXECUTORS, CellFn, SweepReport, execute_cell, predict_cell, run_cell, run_sweep
from .spec import SweepSpec, load_spec
from .store import STATUSES, Store, collect

__all__ = ["EXECUTORS", "STATUSES", "CellFn", "Store", "SweepReport", "SweepSpec", "collect",
           "execute_cell", "load_spec", "predict_cell", "run_cell", "run_sweep"]
