"""Argument checks shared by `synthetic` and `bkd_theory`.

Every check raises `ValueError` naming the parameter and its allowed range; none uses `assert`.
This module sits at the bottom of the dependency chain so both packages can use it.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def positive(name: str, value: float) -> float:
    """Return `value` as a float if it is finite and > 0."""
    v = _finite_float(name, value)
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def nonnegative(name: str, value: float) -> float:
    """Return `value` as a float if it is finite and >= 0."""
    v = _finite_float(name, value)
    if not v >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def in_interval(name: str, value: float, lo: float, hi: float, *, closed: bool = True) -> float:
    """Return `value` if it lies in [lo, hi] (or (lo, hi) when `closed` is False)."""
    v = _finite_float(name, value)
    ok = lo <= v <= hi if closed else lo < v < hi
    if not ok:
        br = ("[", "]") if closed else ("(", ")")
        raise ValueError(f"{name} must be in {br[0]}{lo}, {hi}{br[1]}, got {value!r}")
    return v


def positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return `value` as an int if it is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def finite_array(name: str, value: Any, *, ndim: int | None = None, shape: tuple | None = None) -> np.ndarray:
    """Return `value` as a float64 array after checking finiteness, `ndim` and `shape`.

    In `shape`, `None` entries match any length.
    """
    arr = np.asarray(value, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = tuple("*" if s is None else s for s in shape)
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite everywhere")
    return arr


def probability_vectors(name: str, p: Any, *, num_classes: int | None = None, atol: float = 1e-8) -> np.ndarray:
    """Return `p` as float64 `[..., K]` after checking each row lies on the simplex.

    Entries must be >= -atol and rows must sum to 1 within `atol`.
    """
    arr = finite_array(name, p)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have a class axis (shape [..., K]), got a scalar")
    if num_classes is not None and arr.shape[-1] != num_classes:
        raise ValueError(f"{name} must have K={num_classes} classes on its last axis, got shape {arr.shape}")
    if arr.shape[-1] < 2:
        raise ValueError(f"{name} must have K >= 2 classes, got K={arr.shape[-1]}")
    if np.any(arr < -atol):
        raise ValueError(f"{name} must have entries in [0, 1]; min entry is {arr.min():.3g}")
    sums = arr.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > atol * max(1, arr.shape[-1])):
        worst = sums.flat[np.argmax(np.abs(sums - 1.0))]
        raise ValueError(f"{name} rows must sum to 1 (probability vectors); a row sums to {worst:.12g}")
    return arr


def one_of(name: str, value: Any, allowed: tuple) -> Any:
    """Return `value` if it is in `allowed`."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _finite_float(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v
