"""The `bkd` command: parses arguments and calls the public API, nothing else.

Each subcommand has an `_add_<name>(subparsers)` that declares its flags and a `_cmd_<name>(args)`
that calls the API and prints (plain text, or one JSON document with `--json`). Exit status: 0 on
success, 1 when `bkd check` finds a failed claim, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str, allow_nan=True))


# ---------------------------------------------------------------- info
def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions and available tasks, teachers and students")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    import numpy
    import scipy
    import torch

    import synthetic

    from . import __version__

    info: dict[str, Any] = {
        "bkd_theory": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "tasks": {},
    }
    for name in synthetic.TASK_NAMES:
        task = synthetic.make_task(name)
        info["tasks"][name] = {"K": task.num_classes, "d": task.dim, "description": type(task).__doc__.strip().splitlines()[0]}
    if args.json:
        _print_json(info)
        return 0
    for key in ("bkd_theory", "python", "numpy", "scipy", "torch"):
        print(f"{key:<11} {info[key]}")
    print("tasks:")
    for name, t in info["tasks"].items():
        print(f"  {name:<12} K={t['K']:<3} d={t['d']:<4} {t['description']}")
    return 0


# ---------------------------------------------------------------- run
def _add_run(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("run", help="one instrumented SGD run")


def _cmd_run(args: argparse.Namespace) -> int:
    raise NotImplementedError("bkd run")


# ---------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("predict", help="the theory's predictions for one configuration")


def _cmd_predict(args: argparse.Namespace) -> int:
    raise NotImplementedError("bkd predict")


# ---------------------------------------------------------------- check
def _add_check(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("check", help="walk the THEOREMS registry: prediction vs measurement")


def _cmd_check(args: argparse.Namespace) -> int:
    raise NotImplementedError("bkd check")


# ---------------------------------------------------------------- sweep
def _add_sweep(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("sweep", help="a resumable grid of runs")


def _cmd_sweep(args: argparse.Namespace) -> int:
    raise NotImplementedError("bkd sweep")


# ---------------------------------------------------------------- reproduce
def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("reproduce", help="write the figures F1-F10 and their index")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    raise NotImplementedError("bkd reproduce")


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
