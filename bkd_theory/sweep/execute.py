"""Cell functions and the executors: in-process (`local`) and `dask.distributed` (`dask`)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time
import traceback
import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .spec import SweepSpec, _run_config_cls, load_spec
from .store import Store, plain_data
from ..threads import single_thread

if TYPE_CHECKING:
    from ..engine import RunConfig

CellFn = Callable[["RunConfig"], Mapping[str, Any]]
"""A cell function: config -> {"measured": dict, optional "predicted", "prediction_error",
"status" ("ok" | "diverged"), "versions"}. It must be pure given the config."""

EXECUTORS = ("local", "dask")


def predict_cell(config: "RunConfig") -> dict[str, Any]:
    """Return `theory.predict` for the objects `engine.build` makes of `config` (student in float64,
    the teacher with the run's lam applied), as plain data."""
    from .. import theory
    from ..engine import build

    setup = build(config.replace(dtype="float64"))
    pred = theory.predict(setup.task, setup.student, setup.teacher, gamma=config.gamma, batch=config.batch,
                          momentum=config.momentum, n=config.n, seed=config.seed)
    if hasattr(pred, "to_dict"):
        pred = pred.to_dict()
    return plain_data(pred)


def run_cell(config: "RunConfig", predict: bool = True) -> dict[str, Any]:
    """The default cell function: one `sgd.run`, its `summary()`, and the theory's prediction.

    `measured` is `Run.summary()` without its wall time (the record has its own), so it depends on
    the config alone. A prediction failure is recorded as `prediction_error` (a string), never
    raised. The status is "diverged" when every chain stopped on a non-finite value, else "ok".
    """
    from .. import sgd

    run = sgd.run(config)
    measured = plain_data(run.summary())
    measured.pop("wall_time", None)
    out: dict[str, Any] = {
        "measured": measured,
        "status": "diverged" if run.diverged_chains == config.chains else "ok",
        "versions": plain_data(run.versions),
        "predicted": None,
        "prediction_error": None,
    }
    if predict:
        try:
            out["predicted"] = predict_cell(config)
        except Exception as err:  # recorded in the cell, the sweep goes on
            out["prediction_error"] = f"{type(err).__name__}: {err}"
    return out


def execute_cell(cell_fn: CellFn, config: Mapping[str, Any]) -> dict[str, Any]:
    """Run one cell from its plain-data config and return the complete record to store.

    Exceptions (but not KeyboardInterrupt) become status "error" with the message and traceback.
    Runs under `bkd_theory.threads.single_thread()` (torch and OpenBLAS on one thread), so every executor
    produces bit-identical values.
    """
    from .. import __version__

    cfg = _run_config_cls().from_dict(dict(config))
    record: dict[str, Any] = {"hash": cfg.config_hash(), "status": "ok", "message": None, "seed": cfg.seed,
                              "version": __version__, "config": cfg.to_dict(), "measured": None,
                              "predicted": None, "prediction_error": None}
    start = time.perf_counter()
    try:
        with single_thread():
            result = dict(cell_fn(cfg))
        status = result.pop("status", "ok")
        if status not in ("ok", "diverged"):
            raise ValueError(f"cell function returned status {status!r}; allowed: 'ok', 'diverged'")
        record.update(plain_data(result), status=status)
    except Exception as err:
        record.update(status="error", message=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc(limit=20))
    record["wall_time"] = time.perf_counter() - start
    return record


@dataclasses.dataclass
class SweepReport:
    """What one `run_sweep` call did. `failed` cells were lost to infrastructure (a dead worker)
    and are not stored, so the next run retries them."""

    out: str
    total: int
    skipped: int = 0
    computed: int = 0
    errors: int = 0
    diverged: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_sweep(spec: SweepSpec | str | os.PathLike, out: str | os.PathLike, *, executor: str = "local",
              scheduler: str | None = None, workers: int | None = None, cell_fn: CellFn | None = None,
              retry_errors: bool = False, progress: bool = True) -> SweepReport:
    """Run every cell of `spec` not yet in the store `out`, writing each as soon as it finishes.

    Interrupting (Ctrl-C, a kill) loses only the cells still running; a rerun with the same `out`
    skips every stored cell and computes the rest.

    Args:
        spec: a `SweepSpec` or the path of a TOML sweep file.
        out: the store directory (created if needed).
        executor: "local" (in-process, sequential) or "dask" (`dask.distributed`).
        scheduler: address of a running dask scheduler (e.g. "tcp://host:8786"); without it the dask
            executor starts a `LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)`.
        workers: LocalCluster worker processes (default: the number of CPUs).
        cell_fn: the cell function (default `run_cell` with the spec's `predict`); it must be pure
            given the config, and importable by dask workers.
        retry_errors: also rerun stored cells whose status is "error".
        progress: show a tqdm progress bar.

    A script that calls this with `executor="dask"` and no `scheduler` starts worker processes, so
    it needs the usual `if __name__ == "__main__":` guard.
    """
    from synthetic.validation import one_of, positive_int

    one_of("executor", executor, EXECUTORS)
    if workers is not None:
        positive_int("workers", workers)
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    fn = cell_fn if cell_fn is not None else functools.partial(run_cell, predict=spec.predict)
    store = Store(out)
    store.root.mkdir(parents=True, exist_ok=True)
    pending = [c for c in spec.configs if not _done(store.read(c.config_hash()), retry_errors)]
    report = SweepReport(out=str(store.root), total=len(spec.configs), skipped=len(spec.configs) - len(pending))
    if not pending:
        return report
    run = _run_local if executor == "local" else functools.partial(_run_dask, scheduler=scheduler, workers=workers)
    run(fn, pending, store, report, progress)
    return report


def _done(record: Mapping[str, Any] | None, retry_errors: bool) -> bool:
    return record is not None and not (retry_errors and record.get("status") == "error")


def _record(store: Store, report: SweepReport, record: Mapping[str, Any]) -> None:
    store.write(record)
    report.computed += 1
    report.errors += record["status"] == "error"
    report.diverged += record["status"] == "diverged"


def _bar(total: int, progress: bool, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not progress, desc=name, unit="cell")


def _run_local(fn: CellFn, pending: list["RunConfig"], store: Store, report: SweepReport, progress: bool) -> None:
    with _bar(len(pending), progress, "sweep") as bar:
        for config in pending:
            _record(store, report, execute_cell(fn, config.to_dict()))
            bar.update()


def _run_dask(fn: CellFn, pending: list["RunConfig"], store: Store, report: SweepReport, progress: bool,
              *, scheduler: str | None, workers: int | None) -> None:
    from distributed import Client, LocalCluster, as_completed

    with contextlib.ExitStack() as stack:
        if scheduler:
            client = stack.enter_context(Client(scheduler))
        else:
            n = workers or os.cpu_count() or 1
            cluster = stack.enter_context(LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                       dashboard_address=None, silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
        futures = [client.submit(execute_cell, fn, c.to_dict(), key=f"bkd-cell-{c.config_hash()}", pure=False)
                   for c in pending]
        try:
            with _bar(len(pending), progress, "sweep (dask)") as bar:
                for future in as_completed(futures):
                    try:
                        record = future.result()
                    except Exception as err:  # a dead worker, not the cell: left for the next run
                        report.failed += 1
                        warnings.warn(f"cell {future.key} not stored: {type(err).__name__}: {err}", stacklevel=2)
                    else:
                        _record(store, report, record)
                    bar.update()
        finally:
            client.cancel([f for f in futures if not f.done()])


