"""Figure functions (STYLE 12): each takes an `ax`, draws on it and returns it; none calls
`plt.show()`. The figures in `bkd_theory.reproduce` compose them and end with `finish`.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.2, height: float = 3.4) -> tuple[Figure, np.ndarray]:
    """Return a figure and a 2-D array of axes `[nrows, ncols]` with the toolkit's size per panel."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.5), squeeze=False)
    return fig, axes


def finish(fig: Figure, caption: str) -> Figure:
    """Add the configuration `caption` under the panels and lay the panels out; returns `fig`."""
    fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=7.5, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def band(ax: Axes, x: Sequence[float], mean: Sequence[float], se: Sequence[float], *, label: str, color: str | None = None, k: float = 2.0) -> Axes:
    """Draw `mean` with a shaded band of +-`k` standard errors; returns `ax`."""
    x, mean, se = (np.asarray(v, dtype=float) for v in (x, mean, se))
    (line,) = ax.plot(x, mean, label=label, color=color, lw=1.4)
    ax.fill_between(x, mean - k * se, mean + k * se, color=line.get_color(), alpha=0.2, lw=0)
    return ax


def identity(ax: Axes, values: Sequence[float], *, log: bool = True) -> Axes:
    """Draw the y = x reference line over the range of `values`; returns `ax`."""
    v = np.asarray([x for x in values if np.isfinite(x) and (x > 0 or not log)], dtype=float)
    if v.size:
        lo, hi = v.min() / 1.5, v.max() * 1.5
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls="--", label="y = x")
    return ax
