"""`bkd reproduce`: the figures of DESIGN 6, one module each, registered in `base.FIGURES`.

Each figure module registers a class with `settings`, `measure` and `draw` (`base.figure`); its
claims come from the one claims registry (`bkd_theory.claims`). `figures/README.md` is built from
the registry and the files the figures wrote (`write_index`), never typed by hand.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import pkgutil
import re
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from .. import __version__
from .base import CLAIM_COLUMNS, FIGURES, Figure, Result, figure, point_seed, write

__all__ = ["CLAIM_COLUMNS", "FIGURES", "FIGURE_IDS", "Figure", "Result", "figure", "longest_first", "make", "point_seed",
           "reproduce", "select", "write_index"]

#: the module of each figure, found by name (`fNN_<what>.py` is figure FNN, imported on first use,
#: when it registers itself): a new figure is one new file here
MODULES = dict(sorted(((f"F{int(m[1])}", m[0]) for m in (re.fullmatch(r"f(\d+)_\w+", i.name) for i in
                                                         pkgutil.iter_modules(__path__)) if m),
                      key=lambda kv: int(kv[0][1:])))
FIGURE_IDS = tuple(MODULES)


def _load(fig_id: str) -> Figure:
    importlib.import_module(f"{__name__}.{MODULES[fig_id]}")
    return FIGURES.get(fig_id).obj


def select(only: Sequence[str] | None = None) -> list[Figure]:
    """The figures named in `only` (ids like "F3", any case), or all of them, in figure order."""
    wanted = [s.strip().upper() for s in only or () if s.strip()] or list(FIGURE_IDS)
    unknown = sorted(set(wanted) - set(FIGURE_IDS))
    if unknown:
        raise ValueError(f"only must name figures among {', '.join(FIGURE_IDS)}; unknown: {', '.join(unknown)}")
    return [_load(f) for f in FIGURE_IDS if f in wanted]


def make(fig_id: str, quick: bool, out: Path | str, *, device: str = "cpu") -> tuple[list[Path], Result]:
    """Measure, judge, draw and save one figure; return its paths and its `Result`. Its SGD runs go
    to `device` (`claims.recipes.on_device`), which its `<ID>.json` records unless it is the CPU."""
    from ..claims.recipes import on_device

    fig = select([fig_id])[0]
    s = fig.settings(quick)
    start = time.perf_counter()
    with on_device(device) as device:
        result = fig.measure(s)
    return write(fig, result, s, Path(out), quick=quick, seconds=time.perf_counter() - start, device=device), result


def _meta(path: Path) -> dict:
    """A figure's own `<ID>.json` as a dict ({} when missing or unreadable)."""
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def longest_first(figures: Sequence[Figure], out: Path) -> list[Figure]:
    """The order in which `--jobs` workers take the figures: the longest first by the seconds each
    recorded in `out/<ID>.json` at its last run (figures without a record first, in figure order),
    so the last to start is a short one. Each figure's numbers do not depend on the order."""
    def last(fig: Figure) -> float:
        secs = _meta(Path(out) / f"{fig.id}.json").get("seconds")
        return float(secs) if isinstance(secs, (int, float)) and not isinstance(secs, bool) else math.inf

    return sorted(figures, key=lambda f: -last(f))  # stable: ties keep figure order


def write_index(out: Path, *, quick: bool, timings: dict[str, float] | None = None) -> Path:
    """Write `out/README.md` (atomically): one line per figure with its mode (quick or full, read
    from its own `<ID>.json`, so a folder mixing `--quick` and full figures, or an interrupted or
    `--only` run over an older folder, is described truly), its notes and the claims table read
    from `*.claims.csv`. `quick` is the mode of the run writing the index, named in its header."""
    from ..records import write_atomic

    read = _meta
    def mode(meta: Path) -> str:
        flag = read(meta).get("quick")
        return "quick" if flag is True else "full" if flag is False else "unknown"

    def seconds(fig_id: str) -> str:  # this run's time, else the one the figure recorded
        secs = timings.get(fig_id) if timings else None
        secs = read(out / f"{fig_id}.json").get("seconds") if secs is None else secs
        return f" ({secs:.0f} s)" if isinstance(secs, (int, float)) else ""

    out = Path(out)
    lines = ["# Figures", "",
             f"Last written by `bkd reproduce{' --quick' if quick else ''}` (bkd_theory {__version__}). Each "
             "figure's mode is in the table (quick: small sizes; full: the published sizes); every number below is "
             "read from the files beside this index; `<ID>.json` holds each figure's settings, seed and versions.",
             "", "| figure | mode | what it shows | claims | files |", "| --- | --- | --- | --- | --- |"]
    ids = [i for i in FIGURE_IDS if (out / f"{i}.png").exists()]
    shown = select(ids) if ids else []
    for fig in shown:
        lines.append(f"| {fig.id}: {fig.title} | {mode(out / f'{fig.id}.json')} | {fig.summary}{seconds(fig.id)} | "
                     f"{', '.join(fig.claims) or '-'} | "
                     f"[png]({fig.id}.png), [csv]({fig.id}.csv), [claims]({fig.id}.claims.csv) |")
    for fig in shown:
        meta = out / f"{fig.id}.json"
        notes = json.loads(meta.read_text()).get("notes", []) if meta.exists() else []
        if notes:
            lines += ["", f"**{fig.id}.** " + " ".join(notes)]
    lines += ["", "## Claims: prediction vs measurement", "",
              "Verdicts (DESIGN 2.9): agrees/disagrees within 4 combined SE; holds/violated for bounds and signs; "
              "not stationary; vacuous; inconclusive; finding.", "",
              "| figure | claim | predicted ± SE | measured ± SE | z | verdict |", "| --- | --- | --- | --- | --- | --- |"]
    for fig in shown:
        path = out / f"{fig.id}.claims.csv"
        for row in pd.read_csv(path).to_dict("records") if path.exists() else []:
            lines.append(f"| {fig.id} | {row['claim']} | {_fmt(row['predicted'])} ± {_fmt(row['predicted_se'])} | "
                         f"{_fmt(row['measured'])} ± {_fmt(row['measured_se'])} | {_fmt(row['z'], 2)} | {row['verdict']} |")
    return write_atomic(out / "README.md", "\n".join(lines) + "\n")


def _fmt(value: object, digits: int = 4) -> str:
    try:  # a column mixing numbers and text ("> 1") is read back as text: format the numbers
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if v != v:
        return "–"
    return f"{v:.{digits}g}"


def _make_one(fig_id: str, quick: bool, out: str, device: str = "cpu") -> tuple[str, list[Path], float]:
    """Make one figure with one torch thread (restored after), its SGD runs on `device`, in a worker
    process or in this one: jobs do not oversubscribe the cores, and a figure's numbers do not
    depend on `jobs` (torch's multithreaded reductions change the last bits with the thread count)."""
    import matplotlib
    import torch

    matplotlib.use("Agg")  # figures are files; never open a window
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        paths, _ = make(fig_id, quick, out, device=device)
        return fig_id, paths, time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def reproduce(out: Path | str, *, quick: bool = False, only: Sequence[str] | None = None, jobs: int | None = None,
              progress: bool = False, device: str = "cpu") -> dict[str, list[Path]]:
    """Make the selected figures into `out`, rewriting `out/README.md` after each one (an
    interrupted run keeps every figure it finished).

    Args:
        out: output directory (created if missing).
        quick: small sizes (every figure in under two minutes on 2 cores) instead of full mode.
        only: figure ids to make (default: all).
        jobs: figures made at once in separate processes (1 = in this process; default one per CPU
            core, at most one per figure), taken longest first by their last recorded time in `out`
            (`longest_first`); every figure runs with one torch thread either way.
        progress: show a progress bar.
        device: where the figures' SGD runs go ("cpu", "cuda", "cuda:N"; checked before any work);
            teacher fitting and the theory run on the CPU. Recorded in `<ID>.json` unless "cpu".

    Returns:
        figure id -> the paths it wrote, in figure order.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    from synthetic.validation import positive_int

    from ..engine.config import check_device, device_name

    figures = select(only)
    device = device_name(device)
    check_device(device)
    jobs = min(len(figures), os.cpu_count() or 1) if jobs is None else positive_int("jobs", jobs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, tuple[list[Path], float]] = {}

    def done(fig_id: str, paths: list[Path], secs: float) -> None:  # the index is rewritten after every figure
        results[fig_id] = (paths, secs)
        write_index(out, quick=quick, timings={k: v[1] for k, v in results.items()})
        bar.update()

    with tqdm(total=len(figures), desc="figures", disable=not progress) as bar:
        if jobs == 1:
            for fig in figures:
                done(*_make_one(fig.id, quick, str(out), device))
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                order = longest_first(figures, out)
                futures = [pool.submit(_make_one, fig.id, quick, str(out), device) for fig in order]
                for fut in as_completed(futures):
                    done(*fut.result())
    return {fig.id: results[fig.id][0] for fig in figures}
