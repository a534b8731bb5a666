"""`bkd reproduce`: one module per figure F1..F10 (DESIGN 6).

Each figure module has `make(quick: bool, out: Path) -> list[Path]`. It writes `<ID>.png`, the CSV
behind the plot (`<ID>.csv`), and `<ID>.claims.csv`: one row per checked claim with columns
`claim, configuration, predicted, measured, measured_se, ratio, verdict`. `figures/README.md` is
built from those claims files by `write_index`, never typed by hand.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from .. import __version__


@dataclass(frozen=True)
class Figure:
    """A figure recipe: its id, title, one-line summary and module name."""

    id: str
    title: str
    summary: str
    module: str

    def maker(self) -> Callable[[bool, Path], list[Path]]:
        return importlib.import_module(f"{__name__}.{self.module}").make


FIGURES: tuple[Figure, ...] = (
    Figure("F1", "Learning curves (paper setting)", "Validation loss of MLP students of onehot, bcp and Dirichlet teachers; loss-noise table.", "f01_learning_curves"),
    Figure("F2", "Props 1 and 2", "One-hot and bcp risks coincide along a line through theta*; bcp gradients vanish at theta*.", "f02_risk_interpolation"),
    Figure("F3", "Prop 3", "Predicted vs measured gradient noise sigma^2 at theta* over teachers and noise levels.", "f03_gradient_noise"),
    Figure("F4", "T1 and T3", "E||theta_k - theta*||^2 vs k with the bounds E13/E15 and the Lyapunov prediction E17'.", "f04_distance"),
    Figure("F5", "T2 and T4", "E[F - F*] vs k on the teacher-network task with an MLP student, with E14/E16.", "f05_function_value"),
    Figure("F6", "Neighborhood", "Stationary E[F - F*] vs gamma and vs noise: measured, bound E16, sharp E17.", "f06_neighborhood"),
    Figure("F7", "Step sizes", "Largest convergent gamma for bcp vs onehot against 1/calL, 1/(2 calL) and E19.", "f07_step_sizes"),
    Figure("F8", "Generalisation", "Finite-n excess risk and accuracy vs noise and n, with E18 and nu_c (E10).", "f08_generalisation"),
    Figure("F9", "Bayesian teachers", "Trained teachers' distance to the true BCP and their students' accuracy and loss noise.", "f09_bayesian_teachers"),
    Figure("F10", "MC samples", "Student noise vs the number S of teacher samples (E9).", "f10_mc_samples"),
)
FIGURE_IDS = tuple(f.id for f in FIGURES)
CLAIM_COLUMNS = ("claim", "configuration", "predicted", "measured", "measured_se", "ratio", "verdict")


def select(only: Sequence[str] | None = None) -> list[Figure]:
    """Return the figures named in `only` (ids like "F3", any case), or all of them."""
    if not only:
        return list(FIGURES)
    wanted = [s.strip().upper() for s in only if s.strip()]
    unknown = sorted(set(wanted) - set(FIGURE_IDS))
    if unknown:
        raise ValueError(f"only must name figures among {', '.join(FIGURE_IDS)}; unknown: {', '.join(unknown)}")
    return [f for f in FIGURES if f.id in wanted]


def write_claims(out: Path, fig_id: str, rows: list[dict]) -> Path:
    """Write `<fig_id>.claims.csv` (columns CLAIM_COLUMNS) and return its path."""
    frame = pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))
    path = Path(out) / f"{fig_id}.claims.csv"
    frame.to_csv(path, index=False)
    return path


def write_index(out: Path, *, quick: bool, timings: dict[str, float] | None = None) -> Path:
    """Write `out/README.md`: one line per figure and the claims table read from `*.claims.csv`."""
    out = Path(out)
    lines = [
        "# Figures",
        "",
        f"Written by `bkd reproduce{' --quick' if quick else ''}` (bkd_theory {__version__}). "
        "Every number below is read from the CSV files beside this index.",
        "",
        "| figure | what it shows | files |",
        "| --- | --- | --- |",
    ]
    for fig in FIGURES:
        if (out / f"{fig.id}.png").exists():
            secs = f" ({timings[fig.id]:.0f} s)" if timings and fig.id in timings else ""
            lines.append(f"| {fig.id}: {fig.title} | {fig.summary}{secs} | [png]({fig.id}.png), [csv]({fig.id}.csv) |")
    lines += ["", "## Claims: prediction vs measurement", "",
              "| figure | claim | configuration | predicted | measured ± SE | ratio | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for fig in FIGURES:
        path = out / f"{fig.id}.claims.csv"
        if not path.exists():
            continue
        for row in pd.read_csv(path).to_dict("records"):
            lines.append(
                f"| {fig.id} | {row['claim']} | {row['configuration']} | {_fmt(row['predicted'])} | "
                f"{_fmt(row['measured'])} ± {_fmt(row['measured_se'])} | {_fmt(row['ratio'])} | {row['verdict']} |"
            )
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fmt(value: object) -> str:
    try:  # a column mixing numbers and text ("> 1") is read back as text: format the numbers
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if v != v:
        return "–"
    return f"{v:.4g}"


def _make_one(fig_id: str, quick: bool, out: str, threads: int | None) -> tuple[str, list[Path], float]:
    import matplotlib

    matplotlib.use("Agg")  # figures are files; never open a window
    if threads is not None:  # one BLAS/torch thread per worker process so jobs do not oversubscribe
        import torch

        torch.set_num_threads(threads)
    fig = select([fig_id])[0]
    start = time.perf_counter()
    paths = fig.maker()(quick, Path(out))
    return fig_id, paths, time.perf_counter() - start


def reproduce(out: Path | str, *, quick: bool = False, only: Sequence[str] | None = None, jobs: int = 1,
              progress: bool = False) -> dict[str, list[Path]]:
    """Make the selected figures into `out` and write `out/README.md`.

    Args:
        out: output directory (created if missing).
        quick: small sizes (all ten in a few minutes on 2 cores) instead of full mode.
        only: figure ids to make (default: all).
        jobs: figures made at once in separate processes (1 = in this process).
        progress: show a progress bar.

    Returns:
        figure id -> the paths it wrote, in figure order.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    from synthetic.validation import positive_int

    jobs = positive_int("jobs", jobs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = select(only)
    results: dict[str, tuple[list[Path], float]] = {}
    with tqdm(total=len(figures), desc="figures", disable=not progress) as bar:
        if jobs == 1:
            for fig in figures:
                fig_id, paths, secs = _make_one(fig.id, quick, str(out), None)
                results[fig_id] = (paths, secs)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_make_one, fig.id, quick, str(out), 1) for fig in figures]
                for fut in as_completed(futures):
                    fig_id, paths, secs = fut.result()
                    results[fig_id] = (paths, secs)
                    bar.update()
    write_index(out, quick=quick, timings={k: v[1] for k, v in results.items()})
    return {fig.id: results[fig.id][0] for fig in figures}
