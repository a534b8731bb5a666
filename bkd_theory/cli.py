"""The `bkd` command: parses arguments and calls the public API, nothing else.

Each subcommand has an `_add_<name>(subparsers)` that declares its flags and a `_cmd_<name>(args)`
that calls the API and prints (plain text, or one JSON document with `--json`: strict JSON, a
non-finite number is null and its path is listed under "nonfinite").

`main` is the one error boundary; no traceback reaches the user unless `--debug` is given.
Exit status:
- 0 success;
- 1 `bkd check` found a failed claim, a sweep cell errored, or `--collect` met unreadable cells;
- 2 bad input: a value out of range or an unknown name (`ValueError`, `ConfigError`), a path that
  cannot be used (`OSError`), a size that cannot be allocated or exceeds `--max-memory` /
  `--max-chain-steps` (`MemoryError`, `ResourceError`), input nested too deeply (`RecursionError`);
- 3 an internal error (a bug: the message says so; `--debug` shows the traceback);
- 130 interrupted (Ctrl-C), with what was kept; 141 the output was closed early (`| head`), quietly.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a sentence on what was kept (`main` prints it and exits 130)."""

    def __init__(self, kept: str) -> None:
        super().__init__(kept)
        self.kept = kept


def clean(text: Any) -> str:
    """`text` as a string without terminal control characters (escape sequences, bells, ...)."""
    from synthetic.validation import printable

    return printable(text)


def _strict(obj: Any) -> Any:
    """`obj` as strict-JSON data; a dict gets "nonfinite": {path: "nan" | "inf" | "-inf"} when a
    number had to be replaced by null (strict JSON has no NaN or Infinity)."""
    from .records import strict_json

    nonfinite: dict[str, str] = {}
    out = strict_json(obj, nonfinite)
    if isinstance(out, dict) and nonfinite:
        out["nonfinite"] = nonfinite
    return out


def _print_json(obj: Any) -> None:
    print(json.dumps(_strict(obj), indent=2, sort_keys=False, default=str, allow_nan=False))


def _integer(text: str) -> int:
    """An argparse type: an integer, also written 1e6 or 1_000_000."""
    t = str(text).strip().replace("_", "")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        value = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {clean(text)!r}") from None
    if not (math.isfinite(value) and value.is_integer()):
        raise argparse.ArgumentTypeError(f"must be an integer, got {clean(text)!r}")
    return int(value)


def _writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a directory that exists or can be created and written; ConfigError naming `flag`."""
    from .engine import ConfigError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {clean(path)!r} is a file, not a directory")
    anc = p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"{flag} {clean(path)!r}: {clean(anc)!r} is a file, so no directory can be made under it")
    try:
        fd, tmp = tempfile.mkstemp(dir=anc, prefix=".bkd-write-check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise ConfigError(f"{flag} {clean(path)!r} cannot be written ({clean(anc)}: {err.strerror})") from None
    return p


def _writable_file(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a file that can be written (its directory exists or can be made); ConfigError naming `flag`."""
    from .engine import ConfigError

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {clean(path)!r} is a directory, not a file")
    _writable_dir(p.parent if str(p.parent) else ".", flag)
    return p


def _add_limits(p: argparse.ArgumentParser, cells: bool = False) -> None:
    """Declare --max-memory, --max-chain-steps (and --max-cells for sweeps) and --force."""
    from .engine import resources as rs

    p.add_argument("--max-memory", default="4G", metavar="SIZE",
                   help="refuse work whose estimated memory is above SIZE, e.g. 8G, 512M (default 4G)")
    p.add_argument("--max-chain-steps", type=float, default=float(rs.DEFAULT_MAX_CHAIN_STEPS), metavar="N",
                   help=f"refuse a run of more than N chains x steps (default {rs.DEFAULT_MAX_CHAIN_STEPS:.0e})")
    if cells:
        p.add_argument("--max-cells", type=float, default=float(rs.DEFAULT_MAX_CELLS), metavar="N",
                       help=f"refuse a sweep of more than N cells, counted before expansion (default {rs.DEFAULT_MAX_CELLS})")
    p.add_argument("--force", action="store_true", help="skip the resource checks (--max-memory, --max-chain-steps" +
                   (", --max-cells)" if cells else ")"))


def _limits(args: argparse.Namespace) -> Any:
    """The `engine.Limits` of the parsed flags."""
    from .engine import ConfigError, Limits
    from .engine.resources import parse_size

    steps = args.max_chain_steps
    if not (math.isfinite(steps) and steps > 0):
        raise ConfigError(f"--max-chain-steps must be a number > 0, got {steps!r}")
    cells = getattr(args, "max_cells", None)
    if cells is not None and not (math.isfinite(cells) and cells >= 1):
        raise ConfigError(f"--max-cells must be a number >= 1, got {cells!r}")
    return Limits(max_memory=parse_size(args.max_memory, "--max-memory"), max_chain_steps=steps,
                  **({} if cells is None else {"max_cells": cells}), force=bool(args.force))


# ---------------------------------------------------------------- info
def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions and every registered task, teacher, student, optimizer and instrument")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _registries() -> dict[str, Any]:
    """Every registry of named variants: kind -> list of (name, parameters, help)."""
    import synthetic

    from .claims import KINDS as CLAIMS
    from .engine import OPTIMIZERS, SCHEDULES
    from .instruments import INSTRUMENTS
    from .students import STUDENTS
    from .teachers import LAWS
    from .teachers.trained import KINDS

    kinds = {"tasks": synthetic.TASKS, "teachers": LAWS, "trained teachers": KINDS, "students": STUDENTS,
             "optimizers": OPTIMIZERS, "schedules": SCHEDULES, "instruments": INSTRUMENTS, "claims": CLAIMS}
    return {kind: [{"name": e.name, "params": list(e.params), "help": e.help} for e in reg] for kind, reg in kinds.items()}


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    import numpy
    import scipy
    import torch

    from . import __version__

    info: dict[str, Any] = {"bkd_theory": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
                            "scipy": scipy.__version__, "torch": torch.__version__, **_registries()}
    if args.json:
        _print_json(info)
        return 0
    for key in ("bkd_theory", "python", "numpy", "scipy", "torch"):
        print(f"{key:<11} {info[key]}")
    for kind, entries in _registries().items():
        print(f"{kind}:")
        for e in entries:
            name = ":".join([e["name"], *(p.upper() for p in e["params"])])
            print(f"  {name:<26} {e['help']}")
    print("(a user's own task, teacher or student: package.module:Name)")
    return 0


# ---------------------------------------------------------------- run
def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """Declare one flag per field of `RunConfig` (name, type, default, choices and help from the field)."""
    import dataclasses
    import typing

    from .config import StrEnum
    from .engine import RunConfig

    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        flag, tp, help_ = "--" + f.name.replace("_", "-"), hints[f.name], f.metadata.get("help", "")
        if tp is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
            continue
        args = typing.get_args(tp)
        kind = next((a for a in args if a is not type(None)), tp) if args else tp
        kw: dict[str, Any] = {"default": f.default, "help": f"{help_} (default {f.default})"}
        if isinstance(kind, type) and issubclass(kind, StrEnum):
            kw.update(choices=[m.value for m in kind], default=f.default.value)
        else:
            kw["type"] = _integer if kind is int else kind
        if "choices" in f.metadata:
            kw["choices"] = list(f.metadata["choices"])
        p.add_argument(flag, **kw)


def _config_from(args: argparse.Namespace, **changes: Any) -> Any:
    """The `RunConfig` of the parsed flags (the same validation as the Python API)."""
    import dataclasses

    from .engine import RunConfig

    return RunConfig.from_dict({**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}, **changes})


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="one instrumented SGD run")
    _add_config_flags(p)
    p.add_argument("--out", default=None, help="directory to save the run record (CSV + JSON), checked before the run")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    p.add_argument("--json", action="store_true", help="print one JSON object {config, measured}")
    _add_limits(p)


def _cmd_run(args: argparse.Namespace) -> int:
    from . import sgd

    config = _config_from(args)
    limits = _limits(args)
    if args.out:
        _writable_dir(args.out, "--out")
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        run = sgd.run(config, progress=progress, limits=limits)
    except KeyboardInterrupt:
        raise Interrupted("the run had not finished: nothing was saved") from None
    if args.out:
        try:
            run.save(args.out)
        except KeyboardInterrupt:
            raise Interrupted(f"{args.out} holds the previous record or none, never a partial one") from None
    measured = run.measured()
    if args.json:
        _print_json({"config": run.config, "measured": measured, "wall_time": run.wall_time,
                     "config_hash": config.config_hash(), "out": args.out})
        return 0
    _print_run(config, run, measured)
    if args.out:
        print(f"  saved to {clean(args.out)}")
    return 0


def _print_run(config: Any, run: Any, measured: dict[str, Any]) -> None:
    print(clean(f"bkd run  {config.task}  student={config.student}  teacher={config.teacher}  gamma={config.gamma:g}  "
                f"b={config.batch}  R={config.chains}  steps={config.steps}  ({run.wall_time:.1f} s)"))
    for q, e in run.summary()["quantities"].items():
        flag = "" if e["stationary"] is None else ("  stationary" if e["stationary"] else "  NOT stationary")
        value = f"{e['value']:.6g} +- {e['se']:.2g}" if e["chains"] else \
            ("n/a (no surviving chain)" if not measured["surviving_chains"] else "n/a (not finite)")
        print(f"  {q:<20} {value}{flag}")
    print(f"  diverged chains: {measured['diverged_chains']} / {config.chains}")
    if measured["note"]:
        steps = [s for s in measured["diverged_step"] if s >= 0]
        print(f"  note: {measured['note']}; diverged at steps {steps[:10]}{' ...' if len(steps) > 10 else ''}")


# ---------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="the theory's predictions for one configuration",
                       description="Every theory number (DESIGN 2.5-2.8, 2.10) for the configuration that `bkd run` takes "
                       "with the same flags, in the student's parameter space. --n gives the finite-sample "
                       "predictions (E18, E20's lambda_star_n); --optimizer adam gives E21, --lam the KD mixture (E20); "
                       "flags that only concern the run (steps, chains, init, eval) are accepted "
                       "and ignored.")
    _add_config_flags(p)
    p.add_argument("--n-mc", type=_integer, default=4096, help="Monte Carlo inputs for the expectations over x (>= 16)")
    p.add_argument("--lyapunov", action="store_true", help="also estimate the E19 threshold (a few seconds)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_limits(p)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .engine import build
    from .theory import predict
    from .theory.report import ROWS

    from synthetic.validation import positive_int

    from .engine import predict_cost
    from .engine.resources import check

    config = _config_from(args, **({"regime": "finite"} if args.n is not None else {}))  # --n: E18
    n_mc = positive_int("n_mc (--n-mc)", args.n_mc, minimum=16)
    setup = build(config)
    check(predict_cost(setup.task, setup.student, setup.teacher, n=config.n, n_mc=n_mc), _limits(args))
    pred = predict(setup.task, setup.student, setup.base_teacher, gamma=config.gamma, batch=config.batch,
                   momentum=config.momentum, n=config.n, seed=config.seed, n_mc=n_mc,
                   lyapunov_threshold=args.lyapunov, optimizer=config.optimizer, beta1=config.beta1,
                   beta2=config.beta2, eps=config.eps, lam=config.lam, kd_temperature=config.kd_temperature)
    out = pred.to_dict()
    if config.schedule != "constant":
        out["notes"].append(f"schedule {config.schedule!r} ignored: the predictions are for a constant step size gamma")
    if args.json:
        _print_json({**out, "units": {k: u for k, u, _ in ROWS}})
        return 0
    print(f"bkd predict  {out['task']}  student={out['student']}  gauge={out['gauge'] or 'n/a'}  P={out['num_params']}  "
          f"teacher={out['teacher']}  gamma={config.gamma:g}  b={config.batch}  optimizer={config.optimizer}"
          + (f"  n={config.n}" if config.n else ""))
    rows = [("quantity", "value", "+- SE", "units", "DESIGN")]
    for key, units, tag in ROWS:
        v, se = out.get(key), out.get(f"{key}_se")
        rows.append((key, "n/a" if v is None else f"{v:.6g}", "" if se is None else f"{se:.2g}", units, tag))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"  calL: {out['calL_method']}")
    for note in out["notes"]:
        print(f"  note: {note}")
    return 0


# ---------------------------------------------------------------- check
def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check the claims registry: prediction vs measurement, with a verdict",
                       description="Check the default claims of every kind in the claims registry (P1-P3, T1-T4, "
                       "E17-E19) on small configurations. Exit status 1 when a claim disagrees or is violated.")
    p.add_argument("--only", default="", help="comma-separated claim ids or kinds, e.g. P1,T3 (default: all)")
    p.add_argument("--quick", action="store_true", help="only the quick claims (Monte Carlo, no SGD runs)")
    p.add_argument("--json", action="store_true", help="print the records as one JSON list")


def _cmd_check(args: argparse.Namespace) -> int:
    import time

    from . import claims

    def progress(rec: Any) -> None:
        print(f"  {rec.claim.id:<13} {rec.verdict.verdict}  ({rec.seconds:.1f} s)", file=sys.stderr)

    t0 = time.perf_counter()
    live = sys.stderr.isatty() and not args.json
    records = claims.check_claims(args.only or None, quick=args.quick, progress=progress if live else None)
    failed = [r.claim.id for r in records if r.failed]
    if args.json:
        _print_json([r.to_dict() for r in records])
    else:
        print(claims.format_table(records))
        print(f"{len(records) - len(failed)}/{len(records)} claims without a failed verdict in "
              f"{time.perf_counter() - t0:.1f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


# ---------------------------------------------------------------- sweep
def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="a resumable grid of runs (TOML), or --collect a store into one table",
                       description="Run the cells of a TOML sweep file (format: bkd_theory.sweep) into a store "
                       "of one JSON file per cell; rerun the same command to resume. --collect DIR prints "
                       "the store as one tidy CSV table. Exit status 1 when a cell errored (the others are "
                       "finished first) or when --collect met unreadable cells.")
    p.add_argument("config", nargs="?", metavar="CONFIG.toml", help="the sweep file")
    p.add_argument("--out", metavar="DIR", help="store directory (default: runs/<CONFIG stem>)")
    p.add_argument("--executor", choices=("local", "dask"), help="local (default) or dask (dask.distributed)")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="dask scheduler, e.g. tcp://host:8786 (implies --executor dask; default: a LocalCluster)")
    p.add_argument("--workers", type=_integer, metavar="N", help="LocalCluster worker processes (default: CPU count)")
    p.add_argument("--retry-errors", action="store_true", help="rerun stored cells whose status is error")
    p.add_argument("--dry-run", action="store_true", help="expand and validate the grid, list the cells, run nothing")
    p.add_argument("--collect", metavar="DIR", help="tabulate the store DIR instead of running")
    p.add_argument("--csv", metavar="FILE", help="write the collected table to FILE")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    _add_limits(p, cells=True)


def _cmd_collect(args: argparse.Namespace) -> int:
    from . import sweep

    if args.config:
        raise ValueError("give either CONFIG.toml or --collect DIR, not both")
    if args.csv:
        _writable_file(args.csv, "--csv")
    problems: list[str] = []
    with warnings.catch_warnings():  # printed below, one line each
        warnings.simplefilter("ignore", sweep.StoreWarning)
        table = sweep.collect(args.collect, csv=args.csv, problems=problems)
    if args.json:
        _print_json(json.loads(table.to_json(orient="records")))
    elif args.csv:
        print(f"{len(table)} cells -> {clean(args.csv)}")
    else:
        print(clean(table.to_csv(index=False)), end="")
    for problem in problems:
        print(f"bkd sweep: warning: {clean(problem)}", file=sys.stderr)
    if problems:
        print(f"bkd sweep: {len(problems)} unreadable cell file(s) left out of the table", file=sys.stderr)
    return 1 if problems else 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from . import sweep

    if args.collect:
        return _cmd_collect(args)
    if not args.config:
        raise ValueError("give a CONFIG.toml to run, or --collect DIR")
    executor = args.executor or ("dask" if args.scheduler else "local")
    if args.scheduler and executor != "dask":
        raise ValueError("--scheduler needs --executor dask")
    limits = _limits(args)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    _writable_dir(out, "--out")
    if args.csv:
        _writable_file(args.csv, "--csv")
    spec = sweep.load_spec(args.config, limits=limits)
    if args.dry_run:
        return _dry_run(spec, out, args.json)
    try:
        with warnings.catch_warnings():  # the report lists them; printed below, one line each
            warnings.simplefilter("ignore", sweep.StoreWarning)
            report = sweep.run_sweep(spec, out, executor=executor, scheduler=args.scheduler, workers=args.workers,
                                     retry_errors=args.retry_errors, limits=limits, progress=sys.stderr.isatty())
    except sweep.SweepInterrupted as err:
        r = err.report
        raise Interrupted(f"{r.computed + r.skipped} cells kept in {clean(out)} ({r.computed} computed by this run); "
                          "rerun the same command to resume") from None
    for message in report.warnings:
        print(f"bkd sweep: warning: {clean(message)}", file=sys.stderr)
    if args.csv:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sweep.StoreWarning)
            sweep.collect(out, csv=args.csv)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(clean(f"{spec.name}: {report.total} cells, {report.computed} computed, {report.skipped} already stored, "
                    f"{report.errors} errors, {report.partial} partly diverged, {report.diverged} diverged, "
                    f"{report.failed} lost to workers, {report.elsewhere} left to another sweep -> {out}"))
        if report.stored_errors:
            print(f"  {report.stored_errors} stored cells have status error (--retry-errors reruns them)")
    return 1 if report.errors or report.failed or report.stored_errors else 0


def _dry_run(spec: Any, out: Path, as_json: bool) -> int:
    from . import sweep

    if spec.streamed:
        raise ValueError(f"--dry-run lists at most --max-cells cells; this sweep has {spec.count:,}")
    store = sweep.Store(out)
    cells = [{"hash": c.config_hash(), "stored": store.read(c.config_hash()) is not None, **c.to_dict()}
             for c in spec.configs]
    if as_json:
        _print_json({"name": spec.name, "out": str(out), "cells": cells})
        return 0
    varying = [k for k in spec.configs[0].to_dict() if len({str(c[k]) for c in cells}) > 1] if cells else []
    print(clean(f"{spec.name}: {len(cells)} cells, {sum(c['stored'] for c in cells)} stored in {out}"))
    for c in cells:
        print(clean(f"  {c['hash']} {'stored ' if c['stored'] else 'pending'} " + " ".join(f"{k}={c[k]}" for k in varying)))
    return 0


# ---------------------------------------------------------------- reproduce
def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    from .reproduce import FIGURE_IDS

    p = sub.add_parser("reproduce", help="write the figures F1-F10 and their index")
    p.add_argument("--quick", action="store_true", help="small sizes: every figure in under two minutes in all")
    p.add_argument("--only", default="", help=f"comma-separated figure ids among {','.join(FIGURE_IDS)}")
    p.add_argument("--out", default="figures", help="output directory (default: figures)")
    p.add_argument("--jobs", type=_integer, default=None,
                   help="figures made in parallel single-threaded processes (default: one per CPU core)")
    p.add_argument("--device", default="cpu",
                   help="device of the figures' SGD runs: cpu, cuda or cuda:N (teacher fitting and theory stay on "
                        "the CPU; default cpu)")
    p.add_argument("--json", action="store_true", help="print the written paths as JSON")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    _writable_dir(args.out, "--out")
    try:
        written = reproduce(args.out, quick=args.quick, only=args.only.split(",") if args.only else None,
                            jobs=args.jobs, progress=sys.stderr.isatty(), device=args.device)
    except KeyboardInterrupt:
        raise Interrupted(f"every figure finished before it is kept and indexed in {clean(args.out)}/README.md") from None
    if args.json:
        _print_json({k: [str(p) for p in v] for k, v in written.items()})
    else:
        for fig_id, paths in written.items():
            print(f"{fig_id}: " + ", ".join(str(p) for p in paths))
        print(f"index: {args.out}/README.md")
    return 0


_COMMANDS = {
    "info": (_add_info, _cmd_info),
    "run": (_add_run, _cmd_run),
    "predict": (_add_predict, _cmd_predict),
    "check": (_add_check, _cmd_check),
    "sweep": (_add_sweep, _cmd_sweep),
    "reproduce": (_add_reproduce, _cmd_reproduce),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the `bkd` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="bkd", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in _COMMANDS.values():
        add(sub)
    for p in sub.choices.values():  # `bkd run --debug` as well as `bkd --debug run`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error")
    return parser


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and any(
        s in str(err) for s in ("can't allocate memory", "not enough memory", "out of memory")))


def _error(command: str, err: BaseException) -> tuple[int, str]:
    """(exit status, message) of an exception that reached `main` (module docstring)."""
    if isinstance(err, KeyboardInterrupt):
        return 130, "interrupted" + (f"; {err.kept}" if isinstance(err, Interrupted) else "")
    if isinstance(err, RecursionError):
        return 2, f"error: input nested too deeply (maximum recursion depth exceeded): {err}"
    if isinstance(err, ValueError):
        return 2, f"error: {err}"
    if _is_out_of_memory(err):
        return 2, (f"error: out of memory ({type(err).__name__}: {err}); lower the sizes (chains, steps, batch, "
                   "eval_n, n, n_mc, the teacher's S, the student's widths) or check --max-memory")
    if isinstance(err, OSError):
        where = " -> ".join(clean(f) for f in (err.filename, err.filename2) if f)
        return 2, f"error: {where + ': ' if where else ''}{err.strerror or err}"
    return 3, (f"internal error: {type(err).__name__}: {err} (a bug in bkd_theory; rerun with --debug for the "
               "traceback)")


def _quiet_stdout() -> None:
    """After a broken pipe: send further output to /dev/null so the interpreter exits quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bkd` console script; returns the exit status (module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        status = _COMMANDS[args.command][1](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the boundary
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except BaseException as err:
        if getattr(args, "debug", False) or isinstance(err, SystemExit):
            raise
        status, message = _error(args.command, err)
        try:
            print(clean(f"bkd {args.command}: {message}"), file=sys.stderr)
        except BrokenPipeError:
            pass
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
