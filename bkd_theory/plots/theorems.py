"""Figure functions for the proposition and theorem figures F2-F5 (DESIGN 6; STYLE 12).

Each function draws one kind of panel on the `ax` it is given and returns that `ax`. None creates
a figure, saves, or calls `plt.show()`. Error bars and bands are +-`k` standard errors (k = 2 by
default); the recipes in `bkd_theory.reproduce` say so in their captions.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from . import band, identity

_FLOAT_FLOOR = 1e-18  # where exact zeros are drawn on a log axis


def curve_with_band(ax: Axes, x: Sequence[float], mean: Sequence[float], se: Sequence[float], *, label: str,
                    color: str | None = None, k: float = 2.0, log: bool = False) -> Axes:
    """Draw a measured curve with a +-k SE band; on a log axis the band is clipped above zero."""
    mean, se = np.asarray(mean, float), np.asarray(se, float)
    if log:
        lo = np.maximum(mean - k * se, mean * 1e-3)
        (line,) = ax.plot(x, mean, label=label, color=color, lw=1.4)
        ax.fill_between(x, lo, mean + k * se, color=line.get_color(), alpha=0.2, lw=0)
        ax.set_yscale("log")
        return ax
    return band(ax, x, mean, se, label=label, color=color, k=k)


def prediction_line(ax: Axes, x: Sequence[float], values: Sequence[float], *, label: str, color: str | None = None,
                    style: str = "--") -> Axes:
    """Draw a predicted curve or bound (no error band) in a dashed style."""
    ax.plot(x, values, ls=style, lw=1.2, color=color, label=label)
    return ax


def level(ax: Axes, value: float, se: float = 0.0, *, label: str, color: str | None = None, k: float = 2.0,
          vertical: bool = False, style: str = ":") -> Axes:
    """Draw a horizontal (or vertical) reference level with a +-k SE band when `se` > 0."""
    draw, fill = (ax.axvline, ax.axvspan) if vertical else (ax.axhline, ax.axhspan)
    line = draw(value, ls=style, lw=1.2, color=color, label=label)
    if np.isfinite(se) and se > 0:
        fill(value - k * se, value + k * se, color=line.get_color(), alpha=0.15, lw=0)
    return ax


def points_with_errors(ax: Axes, x: Sequence[float], y: Sequence[float], yerr: Sequence[float], *, label: str,
                       xerr: Sequence[float] | None = None, color: str | None = None, marker: str = "o",
                       k: float = 2.0) -> Axes:
    """Draw measured points with +-k SE error bars (and x error bars when given)."""
    ax.errorbar(np.asarray(x, float), np.asarray(y, float), yerr=k * np.asarray(yerr, float),
                xerr=None if xerr is None else k * np.asarray(xerr, float), fmt=marker, ms=4, capsize=2,
                lw=1.0, color=color, label=label)
    return ax


def predicted_vs_measured(ax: Axes, predicted: Sequence[float], predicted_se: Sequence[float], measured: Sequence[float],
                          measured_se: Sequence[float], groups: Sequence[str], *, k: float = 2.0,
                          markers: Mapping[str, str] | None = None) -> Axes:
    """Log-log scatter of measured against predicted values, one marker per group, with the y = x line."""
    pred, mes = np.asarray(predicted, float), np.asarray(measured, float)
    groups = np.asarray(groups)
    for i, g in enumerate(dict.fromkeys(groups.tolist())):
        m = groups == g
        marker = (markers or {}).get(g, "osD^v<>"[i % 7])
        points_with_errors(ax, pred[m], mes[m], np.asarray(measured_se, float)[m], xerr=np.asarray(predicted_se, float)[m],
                           label=g, marker=marker, k=k)
    identity(ax, np.concatenate([pred, mes]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted")
    ax.set_ylabel("measured")
    return ax


def log_bins(samples: Mapping[str, np.ndarray], *, bins: int = 60, floor: float = _FLOAT_FLOOR) -> np.ndarray:
    """Common bin edges `[bins + 1]` in log10 for all series; exact zeros count at `floor`."""
    logs = [np.log10(np.maximum(np.asarray(v, float), floor)) for v in samples.values()]
    lo, hi = min(float(v.min()) for v in logs), max(float(v.max()) for v in logs)
    return np.linspace(lo - 0.5, hi + 0.5, bins + 1)


def histogram_counts(samples: np.ndarray, edges: np.ndarray, *, floor: float = _FLOAT_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Return (bin centres, counts) of log10 of `samples` on `edges` (the data `count_histogram` draws)."""
    counts, _ = np.histogram(np.log10(np.maximum(np.asarray(samples, float), floor)), bins=edges)
    return 0.5 * (edges[1:] + edges[:-1]), counts


def count_histogram(ax: Axes, edges: np.ndarray, counts: Mapping[str, np.ndarray], *, xlabel: str = "log10 value") -> Axes:
    """Draw precomputed histogram `counts` per series on common `edges` as filled steps."""
    for name, c in counts.items():
        ax.stairs(np.asarray(c, float), edges, fill=True, alpha=0.55, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return ax
