"""Figure functions for the neighborhood, step-size, generalisation and MC-sample figures F6-F10
(DESIGN 6; STYLE 12).

Each function draws one kind of panel element on the `ax` it is given and returns that `ax`; none
creates a figure, saves, or calls `plt.show()`. Measured values are drawn as points with +-`k`
standard-error bars (k = 2 by default), predictions as lines; the recipes say so in their captions.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import NullFormatter

from .theorems import points_with_errors, prediction_line

FLOOR = 1e-12  # where values <= 0 (exact convergence) are drawn on a log axis


def measured_points(ax: Axes, x: Sequence[float], y: Sequence[float], se: Sequence[float], *, label: str,
                    color: str | None = None, marker: str = "o", k: float = 2.0, floor: float | None = None) -> Axes:
    """Draw measured points with +-k SE bars; with `floor`, values below it are drawn at `floor` as
    open markers (e.g. an excess risk that reached 0 to machine precision on a log axis)."""
    x, y, se = (np.asarray(v, float) for v in (x, y, se))
    if floor is None:
        return points_with_errors(ax, x, y, se, label=label, color=color, marker=marker, k=k)
    low = y <= floor
    lines = points_with_errors(ax, x[~low], y[~low], se[~low], label=label, color=color, marker=marker, k=k)
    if low.any():
        color = color or (ax.lines[-1].get_color() if ax.lines else None)
        ax.plot(x[low], np.full(low.sum(), floor), ls="none", marker=marker, mfc="none", color=color, ms=5,
                label=f"{label}: <= {floor:.0e}")
    return lines


def prediction(ax: Axes, x: Sequence[float], y: Sequence[float], *, label: str, color: str | None = None,
               style: str = "--", marker: str | None = None) -> Axes:
    """Draw a predicted curve (no error band); `marker` also marks its points (e.g. a single point)."""
    if marker is None:
        return prediction_line(ax, x, y, label=label, color=color, style=style)
    ax.plot(x, y, ls=style, lw=1.2, color=color, label=label, marker=marker, ms=5, mew=1.2)
    return ax


def bound_segment(ax: Axes, x: Sequence[float], y: Sequence[float], gamma_max: float, *, label: str,
                  color: str | None = None) -> Axes:
    """Draw a bound that holds only for gamma <= `gamma_max` (its theorem's step-size range), and a
    vertical tick where that range ends."""
    ax.plot(x, y, ls="-", lw=2.0, alpha=0.6, color=color, label=label)
    ax.axvline(gamma_max, ls=(0, (1, 3)), lw=1.0, color=color or "0.3")
    ax.annotate("range ends", (gamma_max, float(np.asarray(y, float)[-1])), xytext=(3, -10), textcoords="offset points",
                fontsize=6.5, color=color or "0.3")
    return ax


def thresholds(ax: Axes, values: Mapping[str, tuple[float, float]], *, k: float = 2.0, vertical: bool = True,
               colors: Mapping[str, str] | None = None) -> Axes:
    """Draw labelled reference lines {label: (value, se)}, with a +-k SE band when se > 0."""
    draw, fill = (ax.axvline, ax.axvspan) if vertical else (ax.axhline, ax.axhspan)
    styles = ("--", "-.", ":", (0, (5, 2, 1, 2)), (0, (1, 1)))
    for i, (label, (value, se)) in enumerate(values.items()):
        if not np.isfinite(value):
            continue
        line = draw(value, ls=styles[i % len(styles)], lw=1.1, color=(colors or {}).get(label, f"C{(i + 4) % 10}"),
                    label=label)
        if np.isfinite(se) and se > 0:
            fill(value - k * se, value + k * se, color=line.get_color(), alpha=0.15, lw=0)
    return ax


def ratio_panel(ax: Axes, x: Sequence[float], ratio: Sequence[float], ratio_se: Sequence[float], *, label: str,
                color: str | None = None, marker: str = "o", k: float = 2.0, tolerance: float | None = None) -> Axes:
    """Measured / predicted with +-k SE bars, the line 1 and (optionally) a +-`tolerance` band."""
    points_with_errors(ax, x, ratio, ratio_se, label=label, color=color, marker=marker, k=k)
    ax.axhline(1.0, color="0.4", lw=0.8)
    if tolerance:
        ax.axhspan(1 - tolerance, 1 + tolerance, color="0.85", alpha=0.5, lw=0)
    return ax


def slope_guide(ax: Axes, x: Sequence[float], y0: float, slope: float, *, label: str, x0: float | None = None) -> Axes:
    """Draw the power law y = y0 (x / x0)^slope over `x` (a thin grey guide for a log-log slope)."""
    x = np.asarray(x, float)
    x0 = float(x[0]) if x0 is None else x0
    ax.plot(x, y0 * (x / x0) ** slope, color="0.6", lw=0.8, ls=(0, (4, 2)), label=label)
    return ax


def loglog(ax: Axes, xlabel: str, ylabel: str, title: str, *, legend: bool = True, fontsize: float = 6.5) -> Axes:
    """Log-scale both axes and set the labels, title and legend."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    return labels(ax, xlabel, ylabel, title, legend=legend, fontsize=fontsize)


def no_minor_labels(ax: Axes) -> Axes:
    """Drop the minor tick labels of log axes (they crowd short ranges)."""
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    return ax


def labels(ax: Axes, xlabel: str, ylabel: str, title: str, *, legend: bool = True, fontsize: float = 6.5) -> Axes:
    """Set the axis labels, title and (optionally) a small legend."""
    no_minor_labels(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=fontsize)
    return ax
