"""The `bkd` command: parses arguments and calls the public API, nothing else.

Each subcommand has an `_add_<name>(subparsers)` that declares its flags and a `_cmd_<name>(args)`
that calls the API and prints (plain text, or one JSON document with `--json`). Exit status: 0 on
success, 1 when `bkd check` finds a failed claim, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Sequence


def _strict(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (strict JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def _print_json(obj: Any) -> None:
    print(json.dumps(_strict(obj), indent=2, sort_keys=False, default=str, allow_nan=False))


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
            kw["type"] = kind
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
    p.add_argument("--out", default=None, help="directory to save the run record (CSV + JSON)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    p.add_argument("--json", action="store_true", help="print one JSON object {config, measured}")


def _cmd_run(args: argparse.Namespace) -> int:
    from . import sgd

    config = _config_from(args)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    run = sgd.run(config, progress=progress)
    if args.out:
        run.save(args.out)
    measured = run.measured()
    if args.json:
        _print_json({"config": run.config, "measured": measured, "wall_time": run.wall_time,
                     "config_hash": config.config_hash(), "out": args.out})
        return 0
    print(f"bkd run  {config.task}  student={config.student}  teacher={config.teacher}  gamma={config.gamma:g}  "
          f"b={config.batch}  R={config.chains}  steps={config.steps}  ({run.wall_time:.1f} s)")
    for q, e in run.summary()["quantities"].items():
        flag = "" if e["stationary"] is None else ("  stationary" if e["stationary"] else "  NOT stationary")
        print(f"  {q:<20} {e['value']:.6g} +- {e['se']:.2g}{flag}")
    print(f"  diverged chains: {measured['diverged_chains']} / {config.chains}")
    if args.out:
        print(f"  saved to {args.out}")
    return 0


# ---------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="the theory's predictions for one configuration",
                       description="Every theory number (DESIGN 2.5-2.8) for the configuration that `bkd run` takes "
                       "with the same flags, in the student's parameter space. --n gives the finite-sample "
                       "predictions (E18); flags that only concern the run (steps, chains, init, eval) are accepted "
                       "and ignored.")
    _add_config_flags(p)
    p.add_argument("--n-mc", type=int, default=4096, help="Monte Carlo inputs for the expectations over x")
    p.add_argument("--lyapunov", action="store_true", help="also estimate the E19 threshold (a few seconds)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


#: (key, units, DESIGN tag) of the `bkd predict` table; step sizes are in param^2 / nat
_PREDICT_ROWS = (
    ("sigma2", "grad^2 per sample", "E4"), ("sigma2_closed_form", "grad^2 per sample", "E6-E11"),
    ("trace_C", "grad^2 per sample", "E5"), ("kappa_t", "1", "E(sum t)^2"), ("H_eig_min", "nat/param^2", "mu"),
    ("H_eig_max", "nat/param^2", "L"), ("kappa", "1", "L/mu"), ("F_star", "nat", "Prop. 1"),
    ("calL", "nat/param^2", "E12"), ("gamma_max_T1", "step size", "T1"), ("gamma_max_T2", "step size", "T2"),
    ("gamma_max_T3", "step size", "T3"), ("gamma_max_T4", "step size", "T4"), ("bound_T3", "param^2", "E15"),
    ("bound_T4", "nat", "E16"), ("neighborhood_excess_risk", "nat", "E17"), ("neighborhood_dist2", "param^2", "E17'"),
    ("neighborhood_excess_risk_corrected", "nat", "E17 next order"),
    ("neighborhood_dist2_corrected", "param^2", "E17' next order"), ("gamma_mean_square", "step size", "E17' next order"),
    ("critical_noise", "target variance nu", "E10"), ("finite_n_excess_risk", "nat", "E18"),
    ("finite_n_dist2", "param^2", "E18"), ("gamma_lyapunov", "step size", "E19"),
)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .engine import build
    from .theory import predict

    config = _config_from(args, **({"regime": "finite"} if args.n is not None else {}))  # --n: E18
    setup = build(config)
    pred = predict(setup.task, setup.student, setup.teacher, gamma=config.gamma, batch=config.batch,
                   momentum=config.momentum, n=config.n, seed=config.seed, n_mc=args.n_mc,
                   lyapunov_threshold=args.lyapunov)
    out = pred.to_dict()
    if config.schedule != "constant":
        out["notes"].append(f"schedule {config.schedule!r} ignored: the predictions are for a constant step size gamma")
    if args.json:
        _print_json({**out, "units": {k: u for k, u, _ in _PREDICT_ROWS}})
        return 0
    print(f"bkd predict  {out['task']}  student={out['student']}  gauge={out['gauge'] or 'n/a'}  P={out['num_params']}  "
          f"teacher={out['teacher']}  gamma={config.gamma:g}  b={config.batch}" + (f"  n={config.n}" if config.n else ""))
    rows = [("quantity", "value", "+- SE", "units", "DESIGN")]
    for key, units, tag in _PREDICT_ROWS:
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
                       "the store as one tidy CSV table.")
    p.add_argument("config", nargs="?", metavar="CONFIG.toml", help="the sweep file")
    p.add_argument("--out", metavar="DIR", help="store directory (default: runs/<CONFIG stem>)")
    p.add_argument("--executor", choices=("local", "dask"), help="local (default) or dask (dask.distributed)")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="dask scheduler, e.g. tcp://host:8786 (implies --executor dask; default: a LocalCluster)")
    p.add_argument("--workers", type=int, metavar="N", help="LocalCluster worker processes (default: CPU count)")
    p.add_argument("--retry-errors", action="store_true", help="rerun stored cells whose status is error")
    p.add_argument("--dry-run", action="store_true", help="expand and validate the grid, list the cells, run nothing")
    p.add_argument("--collect", metavar="DIR", help="tabulate the store DIR instead of running")
    p.add_argument("--csv", metavar="FILE", help="write the collected table to FILE")
    p.add_argument("--json", action="store_true", help="print one JSON document")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import sweep

    if args.collect:
        if args.config:
            raise ValueError("give either CONFIG.toml or --collect DIR, not both")
        table = sweep.collect(args.collect, csv=args.csv)
        if args.json:
            _print_json(json.loads(table.to_json(orient="records")))
        elif args.csv:
            print(f"{len(table)} cells -> {args.csv}")
        else:
            print(table.to_csv(index=False), end="")
        return 0
    if not args.config:
        raise ValueError("give a CONFIG.toml to run, or --collect DIR")
    executor = args.executor or ("dask" if args.scheduler else "local")
    if args.scheduler and executor != "dask":
        raise ValueError("--scheduler needs --executor dask")
    spec = sweep.load_spec(args.config)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    if args.dry_run:
        store = sweep.Store(out)
        cells = [{"hash": c.config_hash(), "stored": store.read(c.config_hash()) is not None, **c.to_dict()}
                 for c in spec.configs]
        if args.json:
            _print_json({"name": spec.name, "out": str(out), "cells": cells})
            return 0
        varying = [k for k in spec.configs[0].to_dict() if len({str(c[k]) for c in cells}) > 1]
        print(f"{spec.name}: {len(cells)} cells, {sum(c['stored'] for c in cells)} stored in {out}")
        for c in cells:
            print(f"  {c['hash']} {'stored ' if c['stored'] else 'pending'} "
                  + " ".join(f"{k}={c[k]}" for k in varying))
        return 0
    report = sweep.run_sweep(spec, out, executor=executor, scheduler=args.scheduler, workers=args.workers,
                             retry_errors=args.retry_errors)
    if args.csv:
        sweep.collect(out, csv=args.csv)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(f"{spec.name}: {report.total} cells, {report.computed} computed, {report.skipped} already stored, "
              f"{report.errors} errors, {report.diverged} diverged, {report.failed} lost to workers -> {out}")
    return 0


# ---------------------------------------------------------------- reproduce
def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    from .reproduce import FIGURE_IDS

    p = sub.add_parser("reproduce", help="write the figures F1-F10 and their index")
    p.add_argument("--quick", action="store_true", help="small sizes: all ten figures in a few minutes")
    p.add_argument("--only", default="", help=f"comma-separated figure ids among {','.join(FIGURE_IDS)}")
    p.add_argument("--out", default="figures", help="output directory (default: figures)")
    p.add_argument("--jobs", type=int, default=1, help="figures made in parallel processes (default 1)")
    p.add_argument("--json", action="store_true", help="print the written paths as JSON")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    written = reproduce(args.out, quick=args.quick, only=args.only.split(",") if args.only else None,
                        jobs=args.jobs, progress=sys.stderr.isatty())
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
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in _COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bkd` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command][1](args)
    except ValueError as err:
        print(f"bkd {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
