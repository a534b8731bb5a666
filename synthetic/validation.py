"""Argument checks shared by `synthetic` and `bkd_theory`.

Every check raises `ValueError` naming the parameter and its allowed range; none uses `assert`.
Booleans are refused where numbers are expected (`True` is not the number 1 here). This module
sits at the bottom of the dependency chain so both packages can use it; `ConfigError` (a
`ValueError`) is the project's error for a configuration that cannot be run as given.
"""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np


class ConfigError(ValueError):
    """A configuration that cannot be run as given (bad value, unknown name, too large to run).

    A `ValueError`, so every API promise "bad input raises ValueError" covers it; the message names
    the parameter and what would be accepted.
    """


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


def in_interval(name: str, value: float, lo: float, hi: float, *, closed: bool = True,
                upper_open: bool = False) -> float:
    """Return `value` if it lies in [lo, hi] (or (lo, hi) when `closed` is False, [lo, hi) when
    `upper_open` is True)."""
    v = _finite_float(name, value)
    if upper_open:
        ok, br = lo <= v < hi, ("[", ")")
    else:
        ok, br = (lo <= v <= hi, ("[", "]")) if closed else (lo < v < hi, ("(", ")"))
    if not ok:
        raise ValueError(f"{name} must be in {br[0]}{_num(lo)}, {_num(hi)}{br[1]}, got {value!r}")
    return v


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


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


_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: Any) -> str:
    """`text` as a string without terminal control characters (escape sequences, bells, NULs;
    newlines and tabs are kept), so a name read from a file cannot drive the terminal."""
    return _CONTROL.sub("", str(text))


def one_of(name: str, value: Any, allowed: tuple) -> Any:
    """Return `value` if it is in `allowed`."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _finite_float(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a real number, got the boolean {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v
