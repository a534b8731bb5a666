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

`seed` may also be a [grid] field or a [base] field, but not both there and in `seeds`. The cells
are counted before the grid is expanded (more than `--max-cells`, default 100,000, is refused), and
every cell is built, validated and its memory and work estimated (`engine.resources`) before any
work starts: an unknown key, an unknown RunConfig field, an out-of-range value (a boolean where a
number is expected included) or a cell above `--max-memory` / `--max-chain-steps` raises
`ValueError`. The sweep's `name` is stripped of terminal control characters.

The store is a directory with one JSON file per cell, `<config_hash>.json`, written atomically
(temporary file in the same directory, fsync, `os.replace`) as strict JSON: a file is either
complete or absent, and anything else in the directory (temporary and lock files) is ignored. A
file counts as stored only when it verifies (`Store.inspect`: a JSON object whose hash is its
name and whose config re-hashes to it); anything else is recomputed with a warning. A cell
already stored is never run again, so an interrupted sweep resumes where it stopped. Before
computing a cell a sweep claims it (an flock the kernel drops if the process dies), so two sweeps
on one store compute each cell once. A run that raises is stored with status "error" and its
message (`bkd sweep` then exits 1, after finishing the other cells); a run some of whose chains
diverged has status "partial", one whose chains all diverged "diverged".

Each cell file holds: hash, status ("ok" | "partial" | "diverged" | "error"), message, seed,
package version, the full config, `measured` (`Run.summary()`: values over the surviving chains,
with the per-chain `diverged_step` and `diverged_reason`), `predicted` (`theory.predict`, or None
with `prediction_error` when the prediction failed), versions and wall time. `collect(DIR)`
flattens the store into one row per cell (`measured.excess_risk`, `measured.excess_risk_se`,
`measured.diverged_step`, ...) and reports the files it could not trust.

Determinism: the cell function is pure given its configuration (all randomness comes from
`bkd_theory.rng` and the config's seed) and runs single-threaded (torch and OpenBLAS pinned to one
thread, see `threads`) under both executors, so the dask executor stores bit-for-bit the same
values as the local one. Cells are keyed by config only: after changing the code, sweep into a new
directory (or delete the store) to recompute.
"""
from __future__ import annotations

from .execute import (EXECUTORS, CellFn, SweepInterrupted, SweepReport, check_resources, execute_cell, predict_cell,
                      run_cell, run_sweep)
from .spec import SweepSpec, load_spec
from .store import STATUSES, Claim, Store, StoreWarning, collect

__all__ = ["EXECUTORS", "STATUSES", "CellFn", "Claim", "Store", "StoreWarning", "SweepInterrupted", "SweepReport",
           "SweepSpec", "check_resources", "collect", "execute_cell", "load_spec", "predict_cell", "run_cell",
           "run_sweep"]
