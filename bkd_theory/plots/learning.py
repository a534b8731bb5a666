"""Figure functions for learning curves, loss noise and trained teachers (F1, F9; STYLE 12).

Each function takes an `ax`, draws on it and returns it. Inputs are tidy frames or plain arrays; the
aggregation over seeds (mean and SE across independent chains, DESIGN 2.9) is done here for curves
and by the recipes for everything else.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ..stats import mean_se
from . import band

TEACHER_COLORS = {
    "onehot": "tab:red", "dirichlet:0.5": "tab:orange", "dirichlet:5": "tab:olive", "bcp": "tab:blue",
    "deterministic": "tab:purple", "ensemble": "tab:green", "mc_dropout": "tab:brown", "laplace": "tab:cyan",
}


def color(name: str) -> str | None:
    """The toolkit's colour for a teacher label ("dirichlet:5", "ensemble:5" -> "ensemble"), or None."""
    name = str(name)
    if name in TEACHER_COLORS:
        return TEACHER_COLORS[name]
    return TEACHER_COLORS.get(name.split(":")[0].split(" ")[0])


def seed_mean(frame: pd.DataFrame, *, by: str = "step", value: str = "value") -> pd.DataFrame:
    """Mean and SE across seeds of `value` per `by` from rows (seed, by, value).

    Returns columns `by`, mean, se, seeds; se = std(ddof=1)/sqrt(seeds) (NaN with one seed).
    """
    rows = [(key, *mean_se(g.to_numpy())) for key, g in frame.groupby(by)[value]]
    return pd.DataFrame(rows, columns=[by, "mean", "se", "seeds"])


def seed_bands(ax: Axes, frame: pd.DataFrame, *, group: str = "teacher", order: Sequence[str] | None = None,
               k: float = 2.0) -> Axes:
    """One line per `group` value: mean over seeds of `value` vs `step`, shaded +-k SE across seeds.

    Args:
        frame: tidy rows with columns `group`, seed, step, value (one quantity).
        order: the groups to draw, in order (default: order of appearance).
        k: band half-width in standard errors.
    """
    for name in (order if order is not None else pd.unique(frame[group])):
        sub = frame[frame[group] == name]
        if sub.empty:
            continue
        agg = seed_mean(sub)
        band(ax, agg["step"], agg["mean"], agg["se"].fillna(0.0), label=str(name), color=color(name), k=k)
    ax.set_xlabel("SGD step")
    return ax


def seed_traces(ax: Axes, frame: pd.DataFrame, *, seed: int, group: str = "teacher",
                order: Sequence[str] | None = None) -> Axes:
    """The raw curve of one `seed` for each `group` value (what the loss-noise std measures)."""
    for name in (order if order is not None else pd.unique(frame[group])):
        sub = frame[(frame[group] == name) & (frame["seed"] == seed)].sort_values("step")
        if not sub.empty:
            ax.plot(sub["step"], sub["value"], lw=0.9, label=str(name), color=color(name))
    ax.set_xlabel("SGD step")
    return ax


def reference(ax: Axes, value: float, *, label: str, se: float | None = None, color: str = "0.3",
              ls: str = "--", k: float = 2.0) -> Axes:
    """A horizontal reference line (a prediction), with a +-k SE band when `se` is given."""
    ax.axhline(value, color=color, ls=ls, lw=1.0, label=label)
    if se is not None and math.isfinite(se) and se > 0:
        ax.axhspan(value - k * se, value + k * se, color=color, alpha=0.12, lw=0)
    return ax


def estimates(ax: Axes, labels: Sequence[str], values: Sequence[float], ses: Sequence[float], *,
              k: float = 2.0, reference_value: float | None = None, reference_label: str = "",
              horizontal: bool = True, offset: float = 0.0, fmt: str = "o", series: str | None = None) -> Axes:
    """Point estimates with +-k SE error bars, one per label (e.g. noise ratios or teacher distances).

    With `reference_value`, a dashed line marks the predicted or reference level. `offset` shifts the
    points along the label axis and `series` names them in the legend, so two series can share a panel
    (e.g. fmt="o" and fmt="s" with offsets -0.15 and 0.15).
    """
    pos = np.arange(len(labels))
    vals, errs = np.asarray(values, dtype=float), k * np.asarray(ses, dtype=float)
    for i, (lab, v, e) in enumerate(zip(labels, vals, errs)):
        c = color(lab) or f"C{i}"
        kw = dict(fmt=fmt, color=c, capsize=3, ms=5, mfc="white" if fmt != "o" else c, label=series if i == 0 else None)
        if horizontal:
            ax.errorbar(v, pos[i] + offset, xerr=e, **kw)
        else:
            ax.errorbar(pos[i] + offset, v, yerr=e, **kw)
    if horizontal:
        ax.set_yticks(pos, labels)
        if not ax.yaxis_inverted():
            ax.invert_yaxis()
        if reference_value is not None:
            ax.axvline(reference_value, color="0.4", ls="--", lw=1.0, label=reference_label or None)
    else:
        ax.set_xticks(pos, labels, rotation=30, ha="right")
        if reference_value is not None:
            ax.axhline(reference_value, color="0.4", ls="--", lw=1.0, label=reference_label or None)
    return ax


def predicted_vs_measured(ax: Axes, labels: Sequence[str], predicted: Sequence[float], predicted_se: Sequence[float],
                          measured: Sequence[float], measured_se: Sequence[float], *, k: float = 2.0) -> Axes:
    """Scatter of measured against predicted with +-k SE bars on both axes and the y = x line (linear axes)."""
    p, ps = np.asarray(predicted, dtype=float), k * np.asarray(predicted_se, dtype=float)
    m, ms = np.asarray(measured, dtype=float), k * np.asarray(measured_se, dtype=float)
    for i, lab in enumerate(labels):
        ax.errorbar(p[i], m[i], xerr=ps[i], yerr=ms[i], fmt="o", color=color(lab) or f"C{i}", capsize=3, ms=5, label=str(lab))
    finite = np.concatenate([p[np.isfinite(p)], m[np.isfinite(m)]])
    if finite.size:
        hi = 1.1 * float(finite.max())
        ax.plot([0.0, hi], [0.0, hi], color="0.5", lw=0.8, ls="--", label="y = x")
        ax.set_xlim(left=-0.02 * hi)
        ax.set_ylim(bottom=-0.02 * hi)
    return ax
