"""Validation loss, loss-curve noise and stationary-window statistics (DESIGN 2.9, 6 F1).

`ValidationLoss` is the only instrument here. Loss-curve noise needs the history of the curve, so it
is computed after the run from the recorded `val_loss` (`loss_noise`), and the instrument keeps no
state. The window statistics themselves live in `bkd_theory.stats`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from ..stats import trailing_window, window_std
from .base import PerPoint, Scheduled, per_point, register_instrument
from .context import StepContext


@register_instrument("val_loss")
@dataclass(frozen=True)
class ValidationLoss(Scheduled):
    """`val_loss` = mean over the eval set of CE(e_y, q_theta(x)) = -log q_theta,y(x) (E1, t = e_y).

    This is the validation cross-entropy against sampled labels, as the paper plots it. Its mean is
    F(theta) (the same for every unbiased teacher, DESIGN 2.3), but unlike `excess_risk` it carries
    F* = H(Y|X) and the label noise of the fixed eval sample. Units: nats.
    """

    name: ClassVar[str] = "val_loss"
    needs: ClassVar[frozenset[str]] = frozenset({"eval_log_q"})

    def observe(self, ctx: StepContext) -> dict[str, PerPoint]:
        """Return {"val_loss": `PerPoint` (`[R]` per chain, `[N]` per evaluation point)}."""
        log_q = ctx.eval_log_q  # [R, N, K]
        y = ctx.eval_set.y.to(log_q.device).reshape(1, -1, 1).expand(log_q.shape[0], -1, 1)
        return {"val_loss": per_point(-log_q.gather(-1, y).squeeze(-1), ctx.active)}


def _wide(table: pd.DataFrame, quantity: str) -> pd.DataFrame:
    missing = {"step", "chain", "quantity", "value"} - set(table.columns)
    if missing:
        raise ValueError(f"table must have columns step, chain, quantity, value; missing {sorted(missing)}")
    rows = table[table["quantity"] == quantity]
    if rows.empty:
        raise ValueError(f"quantity {quantity!r} is not in the table")
    return rows.pivot_table(index="step", columns="chain", values="value", aggfunc="first").sort_index()


def loss_noise(table: pd.DataFrame, window: int | float | None = None, *, quantity: str = "val_loss") -> pd.DataFrame:
    """Loss-curve noise per chain: the std of the recorded `quantity` over a trailing window.

    DESIGN 6 (F1 table): noise = std of the validation loss over the last half. Reported raw and
    detrended (a least-squares line over the window removed, so slow convergence inside the window
    does not count as noise). Per chain; aggregate with `stats.mean_se` across chains (DESIGN 2.9:
    chains are the independent samples).

    Args:
        table: tidy run table with columns step, chain, quantity, value.
        window: see `trailing_window` (default: last half of the run).
        quantity: the recorded curve (default "val_loss").

    Returns:
        DataFrame with one row per chain and columns chain, loss_noise, loss_noise_detrended,
        points (number of recorded steps in the window). Units: those of `quantity` (nats).
    """
    wide = _wide(table, quantity)
    mask = trailing_window(wide.index.to_numpy(), window)
    values = wide.to_numpy()[mask]
    return pd.DataFrame(
        {
            "chain": wide.columns.to_numpy(),
            "loss_noise": window_std(values, detrend=False),
            "loss_noise_detrended": window_std(values, detrend=True),
            "points": int(mask.sum()),
        }
    )
