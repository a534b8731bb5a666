"""Validation loss, loss-curve noise and stationary-window statistics (DESIGN 2.9, 6 F1).

`ValidationLoss` is the only instrument here. Loss-curve noise needs the history of the curve, so it
is computed after the run from the recorded `val_loss` (`loss_noise`), and the instrument keeps no
state. `stationary_window_stats` turns a window of per-chain values into a mean with its SE across
chains and a stationarity verdict (DESIGN 2.9); the run summary uses it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import pandas as pd
import torch

from synthetic import validation

from .base import Scheduled, StepContext, mask_inactive


@dataclass(frozen=True)
class ValidationLoss(Scheduled):
    """`val_loss` = mean over the eval set of CE(e_y, q_theta(x)) = -log q_theta,y(x) (E1, t = e_y).

    This is the validation cross-entropy against sampled labels, as the paper plots it. Its mean is
    F(theta) (the same for every unbiased teacher, DESIGN 2.3), but unlike `excess_risk` it carries
    F* = H(Y|X) and the label noise of the fixed eval sample. Units: nats.
    """

    name: ClassVar[str] = "val_loss"
    needs: ClassVar[frozenset[str]] = frozenset({"eval_log_q"})

    def observe(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Return {"val_loss": `[R]`}."""
        log_q = ctx.eval_log_q  # [R, N, K]
        y = ctx.eval_set.y.to(log_q.device).reshape(1, -1, 1).expand(log_q.shape[0], -1, 1)
        loss = -log_q.gather(-1, y).squeeze(-1).mean(dim=-1)
        return {"val_loss": mask_inactive(loss, ctx.active)}


def window_std(values: np.ndarray, *, detrend: bool = False) -> np.ndarray:
    """Return the std over time of each column of `values` `[T, R]` -> `[R]`.

    Raw: the sample std (ddof = 1). Detrended: the residual std after subtracting each column's
    least-squares line a + b s over the window (ddof = 2, for the two fitted coefficients), so a
    pure linear trend has noise 0. Columns with a non-finite value give NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"values must have shape [T, R], got {v.shape}")
    t_len = v.shape[0]
    ddof = 2 if detrend else 1
    if t_len <= ddof:
        raise ValueError(f"values must have more than {ddof} time points for this std, got T={t_len}")
    if detrend:
        s = np.arange(t_len, dtype=np.float64)
        design = np.stack([np.ones_like(s), s - s.mean()], axis=1)  # [T, 2]
        coef, *_ = np.linalg.lstsq(design, np.where(np.isfinite(v), v, 0.0), rcond=None)
        resid = v - design @ coef
    else:
        resid = v - v.mean(axis=0, keepdims=True)
    out = np.sqrt((resid**2).sum(axis=0) / (t_len - ddof))
    return np.where(np.all(np.isfinite(v), axis=0), out, np.nan)


def _wide(table: pd.DataFrame, quantity: str) -> pd.DataFrame:
    missing = {"step", "chain", "quantity", "value"} - set(table.columns)
    if missing:
        raise ValueError(f"table must have columns step, chain, quantity, value; missing {sorted(missing)}")
    rows = table[table["quantity"] == quantity]
    if rows.empty:
        raise ValueError(f"quantity {quantity!r} is not in the table")
    return rows.pivot_table(index="step", columns="chain", values="value", aggfunc="first").sort_index()


def trailing_window(steps: np.ndarray, window: int | float | None) -> np.ndarray:
    """Return a boolean mask over the sorted recorded `steps` selecting the trailing window.

    Args:
        steps: recorded steps, ascending `[T]`.
        window: None -> the last half of the run (steps >= last_step / 2, DESIGN 2.9); an int ->
            the last `window` recorded points; a float in (0, 1] -> that fraction of the run
            (steps >= (1 - window) * last_step).
    """
    steps = np.asarray(steps)
    if window is None:
        window = 0.5
    if isinstance(window, (int, np.integer)) and not isinstance(window, bool):
        validation.positive_int("window", window)
        mask = np.zeros(len(steps), dtype=bool)
        mask[-int(window):] = True
        return mask
    frac = validation.in_interval("window", window, 0.0, 1.0)
    if frac == 0.0:
        raise ValueError(f"window must be in (0, 1] as a fraction or an integer >= 1, got {window!r}")
    return steps >= (1.0 - frac) * steps[-1]


def loss_noise(table: pd.DataFrame, window: int | float | None = None, *, quantity: str = "val_loss") -> pd.DataFrame:
    """Loss-curve noise per chain: the std of the recorded `quantity` over a trailing window.

    DESIGN 6 (F1 table): noise = std of the validation loss over the last half. Reported raw and
    detrended (a least-squares line over the window removed, so slow convergence inside the window
    does not count as noise). Per chain; aggregate with `stationary_window_stats` or mean and SE
    across chains (DESIGN 2.9: chains are the independent samples).

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


class WindowStats(NamedTuple):
    """Stationary-window statistics of one quantity (DESIGN 2.9).

    Attributes:
        mean: mean over chains of each chain's time average over the window.
        se: standard error of `mean` across chains (std with ddof=1 / sqrt(chains)).
        stationary: False when the second-half minus first-half drift is significant (see below).
        drift: mean over chains of (second-half mean - first-half mean).
        drift_se: its SE across chains.
        chains: number of chains used (chains with a non-finite value in the window are dropped).
    """

    mean: float
    se: float
    stationary: bool
    drift: float
    drift_se: float
    chains: int


def stationary_window_stats(values: np.ndarray, *, z: float = 4.0, rtol: float = 0.0) -> WindowStats:
    """Mean, SE across chains and a stationarity check for a window of values `[T, R]` (DESIGN 2.9).

    Each chain's time average over the window is one sample; the SE is across chains, never across
    correlated steps of one chain. Stationarity compares each chain's first-half and second-half
    time averages: the window is declared stationary when |drift| <= z * drift_se (a two-sided test
    at z standard errors; z = 4 matches the toolkit's tolerance convention), or when
    |drift| <= rtol * |mean| (a drift negligible in relative terms). Needs T >= 2 and R >= 2.

    Args:
        values: `[T, R]` (time, chain); a 1-d array is one chain.
        z: number of SEs the drift may reach.
        rtol: relative drift always accepted (0 disables).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"values must have shape [T, R], got {v.shape}")
    validation.positive("z", z)
    validation.nonnegative("rtol", rtol)
    v = v[:, np.all(np.isfinite(v), axis=0)]
    t_len, chains = v.shape
    if t_len < 2:
        raise ValueError(f"values must have at least 2 time points, got T={t_len}")
    if chains == 0:
        return WindowStats(math.nan, math.nan, False, math.nan, math.nan, 0)
    avg = v.mean(axis=0)
    half = t_len // 2
    diff = v[t_len - half :].mean(axis=0) - v[:half].mean(axis=0)
    mean, drift = float(avg.mean()), float(diff.mean())
    if chains < 2:
        return WindowStats(mean, math.nan, False, drift, math.nan, chains)
    se = float(avg.std(ddof=1) / math.sqrt(chains))
    drift_se = float(diff.std(ddof=1) / math.sqrt(chains))
    stationary = abs(drift) <= z * drift_se or abs(drift) <= rtol * abs(mean)
    return WindowStats(mean, se, bool(stationary), drift, drift_se, chains)
