"""The one verdict vocabulary and its rules (DESIGN 2.9). Every claim, `theory.compare`, `bkd check`
and every figure judge with these and nothing else.

    agrees / disagrees    an equality within Z = 4 combined SE (no "or within 10 %" escape)
    holds / violated      a bound or a sign, with its margin in SE
    not stationary        the measurement is not (yet) a stationary value
    vacuous               a bound that cannot bind (its contraction stays ~1 over the run)
    inconclusive          the SE is too large to tell
    finding               a measurement with no prediction, or a paper's statement it contradicts

An `Outcome` is one side of a claim (a value with its SE, optionally a curve over iterations). A
rule takes (prediction, measurement) and returns a `Verdict`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .stats import Z, combined_se, z_score

VERDICTS = ("agrees", "disagrees", "holds", "violated", "not stationary", "vacuous", "inconclusive", "finding")
#: the verdicts that mean a claim failed (`bkd check` exits 1 on them)
FAILED = frozenset({"disagrees", "violated"})


@dataclass(frozen=True)
class Outcome:
    """One side of a claim.

    Attributes:
        value: the number (a curve's closest approach for bounds). se: its standard error.
        k, curve, curve_se: a curve over iterations `[T]` (bounds).
        stationary: False when the measurement is not a stationary value (with `reason`).
        vacuous: a bound that cannot bind. info: extra details for the record.
    """

    value: float
    se: float = 0.0
    k: np.ndarray | None = None
    curve: np.ndarray | None = None
    curve_se: np.ndarray | None = None
    stationary: bool | None = None
    reason: str = ""
    vacuous: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """A rule's judgement: the verdict word, the z-score or margin (in combined SE), and a sentence."""

    verdict: str
    z: float | None
    detail: str

    @property
    def failed(self) -> bool:
        return self.verdict in FAILED


@dataclass(frozen=True)
class Equal:
    """agrees when |m - p| <= Z sqrt(se_m^2 + se_p^2); not stationary first; inconclusive when the
    combined SE cannot resolve `resolution` (a relative size) of the prediction."""

    resolution: float | None = None

    def __call__(self, pred: Outcome, meas: Outcome) -> Verdict:
        z = z_score(meas.value, meas.se, pred.value, pred.se)
        if meas.stationary is False:
            return Verdict("not stationary", z, meas.reason or "the measured value has not settled")
        se = combined_se(meas.se, pred.se)
        if self.resolution is not None and Z * se > self.resolution * abs(pred.value):
            return Verdict("inconclusive", z, f"{Z:g} SE = {Z * se:.3g} exceeds {self.resolution:.0%} of the prediction")
        ok = abs(z) <= Z
        return Verdict("agrees" if ok else "disagrees", z, f"|z| = {abs(z):.2f} {'<=' if ok else '>'} {Z:g}")


@dataclass(frozen=True)
class Sign:
    """measured - predicted has the stated sign (`direction` "+" or "-") beyond Z SE: holds; the
    other sign beyond Z SE: violated; else inconclusive. The margin is reported in SE."""

    direction: str = "+"

    def __call__(self, pred: Outcome, meas: Outcome) -> Verdict:
        sign = 1.0 if self.direction == "+" else -1.0
        z = sign * z_score(meas.value, meas.se, pred.value, pred.se)
        if meas.stationary is False:
            return Verdict("not stationary", z, meas.reason)
        if z > Z:
            return Verdict("holds", z, f"margin {z:.1f} SE > {Z:g}")
        if z < -Z:
            return Verdict("violated", z, f"margin {z:.1f} SE < -{Z:g}")
        return Verdict("inconclusive", z, f"margin {z:.1f} SE within +-{Z:g}")


@dataclass(frozen=True)
class Bound:
    """measured <= bound + Z combined SE at every recorded k (or for the value): holds, else violated;
    vacuous when the prediction says it cannot bind. The margin is the smallest (bound - m) / SE."""

    def __call__(self, pred: Outcome, meas: Outcome) -> Verdict:
        if pred.vacuous:
            return Verdict("vacuous", None, pred.reason or "the bound cannot bind over the run")
        if pred.curve is not None:
            if meas.curve is None or not np.array_equal(pred.k, meas.k):
                raise ValueError("a bound curve needs a measured curve on the same recorded k")
            se = np.hypot(meas.curve_se, pred.curve_se)
            gap = (pred.curve - meas.curve) / np.where(se > 0, se, np.inf)
            bad = meas.curve > pred.curve + Z * se
            i = int(np.argmin(gap))
            z = float(gap[i]) if np.isfinite(gap[i]) else math.inf
            if bad.any():
                return Verdict("violated", z, f"above the bound at {int(bad.sum())}/{bad.size} k (first k={int(pred.k[bad][0])})")
            return Verdict("holds", z, f"holds at {bad.size}/{bad.size} k")
        z = -z_score(meas.value, meas.se, pred.value, pred.se)
        if meas.stationary is False:
            return Verdict("not stationary", z, meas.reason)
        return Verdict("holds" if z >= -Z else "violated", z, f"margin {z:.1f} SE")


@dataclass(frozen=True)
class Zero:
    """An exact zero up to rounding: holds when |m| <= atol, else violated."""

    atol: float = 1e-12

    def __call__(self, pred: Outcome, meas: Outcome) -> Verdict:
        ok = abs(meas.value - pred.value) <= self.atol
        return Verdict("holds" if ok else "violated", None, f"|m| {'<=' if ok else '>'} {self.atol:.0e}")


@dataclass(frozen=True)
class Finding:
    """No verdict beyond "finding": a measurement with no prediction, or a paper's statement set beside one."""

    def __call__(self, pred: Outcome, meas: Outcome) -> Verdict:
        z = z_score(meas.value, meas.se, pred.value, pred.se) if math.isfinite(pred.value) else None
        return Verdict("finding", z, "reported, not judged")
