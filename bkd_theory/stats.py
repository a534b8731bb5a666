"""The toolkit's statistics, each written once (DESIGN 2.9): mean and SE, batch means, windows,
slopes, crossings, the combined-SE z-score and the tolerance `Z`.

Conventions: an SE is a standard error of a mean (std with ddof = 1 over sqrt(n)); chains are the
independent samples of a run, never the correlated steps of one chain; two independent errors
combine in quadrature (`combined_se`). Non-finite entries (diverged chains) are left out and
counted.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from synthetic import validation
from synthetic.base import Estimate

#: the one tolerance of the toolkit: an equality holds when |a - b| <= Z combined SE
Z = 4.0


def mean_se(values: np.ndarray | Sequence[float], axis: int = -1) -> tuple[Any, Any, Any]:
    """Return (mean, SE, n) over `axis`, ignoring non-finite entries.

    SE = std(ddof=1) / sqrt(n); NaN where fewer than 2 finite entries remain (mean NaN where none).
    Python scalars for 1-d input.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        f = v[np.isfinite(v)]
        n = len(f)
        return (float(f.mean()) if n else math.nan, float(f.std(ddof=1) / np.sqrt(n)) if n > 1 else math.nan, n)
    w = np.where(np.isfinite(v), v, np.nan)
    n = np.sum(np.isfinite(w), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN is the answer
        mean = np.nanmean(w, axis=axis)
        se = np.nanstd(w, axis=axis, ddof=1) / np.sqrt(n)
    return mean, np.where(n > 1, se, np.nan), n


def estimate(values: np.ndarray | Sequence[float], method: str) -> Estimate:
    """The mean of i.i.d. `values` with its SE, as an `Estimate` (non-finite entries left out)."""
    m, se, _ = mean_se(np.asarray(values, dtype=np.float64).reshape(-1))
    return Estimate(m, se, method)


def combined_se(*ses: float) -> float:
    """sqrt(sum se_i^2): the SE of a sum or difference of independent estimates."""
    return float(math.sqrt(sum(float(s) ** 2 for s in ses)))


def z_score(measured: float, measured_se: float, predicted: float, predicted_se: float = 0.0) -> float:
    """(measured - predicted) / sqrt(se_m^2 + se_p^2); +-inf when both SEs are 0 and the values differ."""
    se = combined_se(measured_se, predicted_se)
    dev = float(measured) - float(predicted)
    if se > 0:
        return dev / se
    return 0.0 if dev == 0 else math.copysign(math.inf, dev)


def ratio_se(a: float, a_se: float, b: float, b_se: float) -> float:
    """Delta-method SE of a / b for independent a and b."""
    r = a / b
    return abs(r) * math.hypot(a_se / a if a else 0.0, b_se / b)


def ratio_of_means(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """(mean(a) / mean(b), its SE, seeds) for paired per-seed values: the delta method with the
    pairing, SE = std(a_r - R b_r) / (sqrt(n) mean(b)). Unlike the mean of per-seed ratios it has no
    Jensen bias E[1/b] > 1/E[b] (a few per cent to 15 % for short windows); seeds with a non-finite
    value are left out."""
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = np.asarray(a, np.float64)[ok], np.asarray(b, np.float64)[ok]
    n = len(a)
    if n < 2:
        return math.nan, math.nan, n
    r = float(a.mean() / b.mean())
    return r, float(np.std(a - r * b, ddof=1) / (math.sqrt(n) * abs(b.mean()))), n


def batch_means(values: np.ndarray, batches: int) -> np.ndarray:
    """Means of `batches` consecutive, equally long blocks along axis 0 of `values` `[T, ...]`.

    The first T mod batches points are dropped so that every block has the same length.
    """
    v = np.asarray(values, dtype=np.float64)
    batches = validation.positive_int("batches", batches)
    if v.shape[0] < batches:
        raise ValueError(f"values must have at least batches={batches} points along axis 0, got {v.shape[0]}")
    size = v.shape[0] // batches
    v = v[v.shape[0] - size * batches:]
    return v.reshape(batches, size, *v.shape[1:]).mean(axis=1)


def trailing_window(steps: np.ndarray, window: int | float | None) -> np.ndarray:
    """A boolean mask over the ascending recorded `steps` selecting the trailing window.

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


def window_std(values: np.ndarray, *, detrend: bool = False) -> np.ndarray:
    """The std over time of each column of `values` `[T, R]` -> `[R]`.

    Raw: the sample std (ddof = 1). Detrended: the residual std after subtracting each column's
    least-squares line over the window (ddof = 2), so a pure linear trend has noise 0. Columns with
    a non-finite value give NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"values must have shape [T, R], got {v.shape}")
    t_len, ddof = v.shape[0], 2 if detrend else 1
    if t_len <= ddof:
        raise ValueError(f"values must have more than {ddof} time points for this std, got T={t_len}")
    if detrend:
        s = np.arange(t_len, dtype=np.float64)
        design = np.stack([np.ones_like(s), s - s.mean()], axis=1)
        coef, *_ = np.linalg.lstsq(design, np.where(np.isfinite(v), v, 0.0), rcond=None)
        resid = v - design @ coef
    else:
        resid = v - v.mean(axis=0, keepdims=True)
    out = np.sqrt((resid**2).sum(axis=0) / (t_len - ddof))
    return np.where(np.all(np.isfinite(v), axis=0), out, np.nan)


def loglog_slope(x: Sequence[float], y: Sequence[float], se: Sequence[float]) -> tuple[float, float]:
    """Weighted least-squares slope of log y on log x (weights (y / se)^2) and its SE.

    The SE comes from the measurement SEs (valid when the points are independent). NaN with fewer
    than 2 usable points.
    """
    x, y, se = (np.asarray(v, float) for v in (x, y, se))
    keep = (x > 0) & (y > 0) & np.isfinite(se) & (se > 0)
    if keep.sum() < 2:
        return math.nan, math.nan
    X = np.stack([np.ones(keep.sum()), np.log(x[keep])], axis=1)
    w = (y[keep] / se[keep]) ** 2
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    beta = cov @ X.T @ (w * np.log(y[keep]))
    return float(beta[1]), float(math.sqrt(cov[1, 1]))


def crossing(x: Sequence[float], y: Sequence[float], y_se: Sequence[float], level: float) -> tuple[float, float]:
    """The first x where y rises through `level`, interpolated linearly in log x, with its
    delta-method SE from the two bracketing points' SEs; (nan, nan) when y never crosses."""
    x, y, s = (np.asarray(v, float) for v in (x, y, y_se))
    for i in range(1, len(x)):
        if y[i - 1] < level <= y[i]:
            d = y[i] - y[i - 1]
            t = (level - y[i - 1]) / d
            span = math.log(x[i] / x[i - 1])
            lx = math.log(x[i - 1]) + t * span
            dt = math.hypot((level - y[i]) / d**2 * s[i - 1], (level - y[i - 1]) / d**2 * s[i])
            return math.exp(lx), math.exp(lx) * abs(span) * dt
    return math.nan, math.nan


def drift(values: np.ndarray, batches: int = 4) -> tuple[float, float]:
    """The trend over a window `[T, R]` by batch means: each chain's window is cut into `batches`
    equal blocks of time, the least-squares slope of its block means is one sample per chain, and
    the drift over the window is slope * (batches - 1). Returns (mean drift, SE across chains)."""
    v = np.asarray(values, dtype=np.float64)
    b = min(validation.positive_int("batches", batches, minimum=2), v.shape[0])
    if b < 2 or v.shape[1] < 2:
        return math.nan, math.nan
    means = batch_means(v, b)  # [b, R]
    t = np.arange(b) - (b - 1) / 2.0
    slopes = (t @ (means - means.mean(axis=0))) / (t @ t) * (b - 1)
    m, se, _ = mean_se(slopes)
    return m, se


def unrelaxed_fraction(eigenvalues: np.ndarray, power: float, decay: float, order: int = 2) -> float:
    """sum_i lam_i^power exp(-order lam_i decay) / sum_i lam_i^power: the share of a quantity that
    weighs mode i by lam_i^power still not relaxed after `decay` = sum of the step sizes so far
    (linearised SGD, DESIGN 2.9: the mean offset of mode i decays as prod_k (1 - gamma_k lam_i) ~
    exp(-lam_i sum_k gamma_k)). order 2: a quantity quadratic in the offset (F - F* around an
    optimum with zero gradient); order 1: one linear in it (F - F* around theta_lam of a biased
    teacher, where grad F != 0), which relaxes at half the rate."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    w = lam**power
    return float(np.sum(w * np.exp(-float(order) * lam * decay)) / np.sum(w))