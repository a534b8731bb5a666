"""Cell functions and the executors: in-process (`local`) and `dask.distributed` (`dask`)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import time
import traceback
import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping

from synthetic.validation import ConfigError

from .spec import SweepSpec, _run_config_cls, load_spec
from .store import Store, StoreWarning, plain_data
from ..threads import single_thread

if TYPE_CHECKING:
    from ..engine import Limits, RunConfig

CellFn = Callable[["RunConfig"], Mapping[str, Any]]
"""A cell function: config -> {"measured": dict, optional "predicted", "prediction_error",
"status" ("ok" | "partial" | "diverged"), "versions"}. It must be pure given the config."""

EXECUTORS = ("local", "dask")
CELL_STATUSES = ("ok", "partial", "diverged")
#: seconds to wait for a dask scheduler before giving up
CONNECT_TIMEOUT = 10


def predict_cell(config: "RunConfig") -> dict[str, Any]:
    """Return `theory.predict` for the objects `engine.build` makes of `config` (student in float64,
    the teacher with the run's lam applied), as plain data."""
    from .. import theory
    from ..engine import build

    setup = build(config.replace(dtype="float64"))
    pred = theory.predict(setup.task, setup.student, setup.teacher, gamma=config.gamma, batch=config.batch,
                          momentum=config.momentum, n=config.n, seed=config.seed, optimizer=config.optimizer,
                          beta1=config.beta1, beta2=config.beta2, eps=config.eps)
    if hasattr(pred, "to_dict"):
        pred = pred.to_dict()
    return plain_data(pred)


def run_cell(config: "RunConfig", predict: bool = True) -> dict[str, Any]:
    """The default cell function: one `sgd.run`, its `summary()`, and the theory's prediction.

    `measured` is `Run.summary()` without its wall time (the record has its own), so it depends on
    the config alone; it holds the per-chain `diverged_step` and `diverged_reason`, and its values
    are over the surviving chains. A prediction failure is recorded as `prediction_error` (a
    string), never raised. The status is "diverged" when every chain diverged (`engine.divergence`),
    "partial" when some did, else "ok".
    """
    from .. import sgd

    run = sgd.run(config, limits=None)  # the sweep checked every cell's resources before work
    measured = plain_data(run.summary())
    measured.pop("wall_time", None)
    d = run.diverged_chains
    out: dict[str, Any] = {
        "measured": measured,
        "status": "diverged" if d == config.chains else ("partial" if d else "ok"),
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
        if status not in CELL_STATUSES:
            raise ValueError(f"cell function returned status {status!r}; allowed: {', '.join(CELL_STATUSES)}")
        record.update(plain_data(result), status=status)
    except Exception as err:
        record.update(status="error", message=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc(limit=20))
    record["wall_time"] = time.perf_counter() - start
    return record


@dataclasses.dataclass
class SweepReport:
    """What one `run_sweep` call did. `failed` cells were lost to infrastructure (a dead worker)
    and are not stored, so the next run retries them; `elsewhere` cells were being computed by
    another sweep on the same store; `stored_errors` are cells skipped with status "error";
    `warnings` name the stored files that could not be trusted and were recomputed."""

    out: str
    total: int
    skipped: int = 0
    computed: int = 0
    errors: int = 0
    partial: int = 0
    diverged: int = 0
    failed: int = 0
    elsewhere: int = 0
    stored_errors: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_sweep`; `report` says what was computed (and kept) before it."""

    def __init__(self, report: SweepReport) -> None:
        super().__init__(f"interrupted; {report.computed} cells kept in {report.out}")
        self.report = report


def run_sweep(spec: SweepSpec | str | os.PathLike, out: str | os.PathLike, *, executor: str = "local",
              scheduler: str | None = None, workers: int | None = None, cell_fn: CellFn | None = None,
              retry_errors: bool = False, progress: bool = True, limits: "Limits | None | str" = "default") -> SweepReport:
    """Run every cell of `spec` not yet in the store `out`, writing each as soon as it finishes.

    Before any work, every pending cell's resources are estimated and checked against `limits`
    (default `engine.Limits()`; None or `Limits(force=True)` skips the check). Interrupting (Ctrl-C raises
    `SweepInterrupted`, a KeyboardInterrupt; a kill) loses only the cells still running; a rerun
    with the same `out` skips every stored cell and computes the rest. Cells claimed by another
    sweep on the same store are left to it (`Store.claim`); stored files that cannot be trusted are
    recomputed with a `StoreWarning`.

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
        limits: the resource limits (`engine.Limits`; "default" is `Limits()`, None checks nothing;
            a spec read from a path is counted against the default `max_cells` then).

    A script that calls this with `executor="dask"` and no `scheduler` starts worker processes, so
    it needs the usual `if __name__ == "__main__":` guard.
    """
    from synthetic.validation import one_of, positive_int

    from ..engine import Limits

    one_of("executor", executor, EXECUTORS)
    if workers is not None:
        positive_int("workers", workers)
    limits = Limits() if isinstance(limits, str) and limits == "default" else limits
    if not (limits is None or isinstance(limits, Limits)):
        raise ValueError(f"limits must be an engine.Limits or None, got {limits!r}")
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec, limits=limits)
    fn = cell_fn if cell_fn is not None else functools.partial(run_cell, predict=spec.predict)
    store = Store(out)
    store.root.mkdir(parents=True, exist_ok=True)
    report = SweepReport(out=str(store.root), total=0)
    cells: Any = spec.iter_configs() if spec.streamed else list(spec.configs)
    if not spec.streamed:
        check_resources([c for c in cells if not _stored(store, c.config_hash(), report, retry_errors, count=False)],
                        limits)
    run = _run_local if executor == "local" else functools.partial(_run_dask, scheduler=scheduler, workers=workers)
    try:
        run(fn, cells, store, report, progress, retry_errors)
    except KeyboardInterrupt:
        raise SweepInterrupted(report) from None
    return report


def check_resources(configs: Any, limits: "Limits | None") -> None:
    """Raise `ResourceError` naming the first cell whose estimate exceeds `limits` (None: no check)."""
    import dataclasses as dc

    from ..engine import build, resources

    if limits is None or limits.force:
        return
    setups: dict[tuple, Any] = {}
    for c in configs:
        key = (c.task, c.standardize, c.student, c.gauge, c.features, c.teacher, c.lam)
        if key not in setups:
            setups[key] = build(c)
        try:
            resources.check(resources.run_cost(dc.replace(setups[key], config=c), "a cell"), limits)
        except resources.ResourceError as err:
            raise resources.ResourceError(f"cell {c.config_hash()}: {err}") from None


def _stored(store: Store, key: str, report: SweepReport, retry_errors: bool, *, count: bool = True) -> bool:
    """Whether the cell `key` is stored and trusted (an error cell counts unless `retry_errors`);
    an untrusted file is reported (once) and recomputed."""
    record, problem = store.inspect(key)
    if problem and not any(w.startswith(f"cell {key} ") for w in report.warnings):
        message = f"cell {key} {problem}: recomputed"
        report.warnings.append(message)
        warnings.warn(message, StoreWarning, stacklevel=3)
    if count:
        report.total += 1
    if record is None:
        return False
    if record.get("status") == "error":
        if retry_errors:
            return False
        report.stored_errors += count
    report.skipped += count
    return True


def _record(store: Store, report: SweepReport, record: Mapping[str, Any]) -> None:
    store.write(record)
    report.computed += 1
    report.errors += record["status"] == "error"
    report.partial += record["status"] == "partial"
    report.diverged += record["status"] == "diverged"


def _bar(total: int | None, progress: bool, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not progress, desc=name, unit="cell")


def _claimed(store: Store, config: "RunConfig", report: SweepReport, retry_errors: bool) -> Any:
    """A claim on `config`'s cell when this sweep should compute it, else None (stored or claimed)."""
    key = config.config_hash()
    if _stored(store, key, report, retry_errors):
        return None
    claim = store.claim(key)
    if claim is None:
        report.elsewhere += 1
        return None
    again = store.read(key)
    if again is not None and not (retry_errors and again.get("status") == "error"):
        claim.release()  # finished by another sweep between the check and the claim
        report.skipped += 1
        return None
    return claim


def _run_local(fn: CellFn, cells: Any, store: Store, report: SweepReport, progress: bool, retry_errors: bool) -> None:
    with _bar(len(cells) if isinstance(cells, list) else None, progress, "sweep") as bar:
        for config in cells:
            claim = _claimed(store, config, report, retry_errors)
            if claim is not None:
                try:
                    _record(store, report, execute_cell(fn, config.to_dict()))
                finally:
                    claim.release()
            bar.update()


def _client(stack: contextlib.ExitStack, scheduler: str | None, workers: int | None) -> Any:
    """A dask client: on `scheduler` (ConfigError naming it when it cannot be reached), or on a LocalCluster."""
    from distributed import Client, LocalCluster

    if not scheduler:
        n = workers or os.cpu_count() or 1
        cluster = stack.enter_context(LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                   dashboard_address=None, silence_logs=logging.ERROR))
        return stack.enter_context(Client(cluster))
    try:
        return stack.enter_context(Client(scheduler, timeout=CONNECT_TIMEOUT))
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"scheduler {scheduler!r} cannot be reached within {CONNECT_TIMEOUT} s "
                          f"({type(err).__name__}: {err})") from None


def _run_dask(fn: CellFn, cells: Any, store: Store, report: SweepReport, progress: bool, retry_errors: bool,
              *, scheduler: str | None, workers: int | None) -> None:
    """Submit claimed cells in a window of 4 per worker (the claims are held here, by the driver)."""
    from distributed import wait

    with contextlib.ExitStack() as stack:
        client = _client(stack, scheduler, workers)
        window = 4 * max(1, len(client.scheduler_info().get("workers", {})) or (workers or 1))
        running: dict[Any, Any] = {}
        try:
            with _bar(len(cells) if isinstance(cells, list) else None, progress, "sweep (dask)") as bar:
                for config in itertools.chain(cells, [None]):
                    claim = None if config is None else _claimed(store, config, report, retry_errors)
                    if claim is not None:
                        future = client.submit(execute_cell, fn, config.to_dict(), pure=False,
                                               key=f"bkd-cell-{config.config_hash()}")
                        running[future] = claim
                    elif config is not None:
                        bar.update()
                    while running and (len(running) >= window or config is None):
                        done = wait(list(running), return_when="FIRST_COMPLETED").done
                        for future in done:
                            _collect(future, running.pop(future), store, report)
                            bar.update()
        finally:
            client.cancel([f for f in running if not f.done()])
            for claim in running.values():
                claim.release()


def _collect(future: Any, claim: Any, store: Store, report: SweepReport) -> None:
    try:
        try:
            record = future.result()
        except Exception as err:  # a dead worker, not the cell: left for the next run
            report.failed += 1
            warnings.warn(f"cell {future.key} not stored: {type(err).__name__}: {err}", stacklevel=2)
        else:
            _record(store, report, record)
    finally:
        claim.release()
