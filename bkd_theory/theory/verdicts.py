"""What a claim of the THEOREMS registry is and how it is judged (`bkd_theory.theory.registry`).

A `Claim` holds a one-line statement, its DESIGN tags, a small default configuration (plain data),
`predict(config)` and `measure(config)`, both returning an `Outcome`, and a verdict rule:

- `Equal`: |measured - predicted| <= 4 SE (SEs of both sides combined), or within a stated relative
  tolerance where the theory is asymptotic (E17 10 %, E18 15 %, E19 10 %), as `theory.compare` does;
- `Below` (bounds T1-T4): measured <= bound + 4 SE at every recorded k;
- `Zero` (Prop. 2): |measured| <= an absolute rounding tolerance.

`Claim.check()` returns the record {claim, statement, tags, configuration, predicted, predicted_se,
measured, measured_se, ratio, verdict, passed, seconds, details}.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["Below", "Claim", "Equal", "Outcome", "Z", "Zero"]

Z = 4.0  # SE multiple of every verdict (contract: |estimate - exact| <= 4 SE)


@dataclass(frozen=True)
class Outcome:
    """One side of a claim: `value` with its SE (a curve's last point) and, for bounds, the curve and
    its SEs `[T]` at the recorded iterations k `[T]`; `info` goes to the record's `details`."""

    value: float
    se: float = 0.0
    k: np.ndarray | None = None
    curve: np.ndarray | None = None
    curve_se: np.ndarray | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Equal:
    """Pass when |m - p| <= max(z sqrt(se_m^2 + se_p^2), rtol |p|); a non-stationary measurement fails."""

    z: float = Z
    rtol: float = 0.0

    def __call__(self, pred: Outcome, meas: Outcome) -> tuple[str, bool]:
        se = math.hypot(pred.se, meas.se)
        dev = abs(meas.value - pred.value)
        zval = dev / se if se > 0 else (0.0 if dev == 0 else math.inf)
        if meas.info.get("stationary") is False:
            return f"not stationary (|z|={zval:.1f})", False
        ok = dev <= max(self.z * se, self.rtol * abs(pred.value))
        tol = f", tol {self.rtol:.0%}" if self.rtol else ""
        return f"{'pass' if ok else 'FAIL'} (|z|={zval:.1f}{tol})", bool(ok)


@dataclass(frozen=True)
class Below:
    """Bound: measured_k <= bound_k + z sqrt(se_m,k^2 + se_b,k^2) at every recorded k."""

    z: float = Z

    def __call__(self, pred: Outcome, meas: Outcome) -> tuple[str, bool]:
        if pred.k is None or meas.k is None or not np.array_equal(pred.k, meas.k):
            raise ValueError("a bound needs predicted and measured curves on the same recorded k")
        se = np.hypot(meas.curve_se, pred.curve_se)
        bad = ~(meas.curve <= pred.curve + self.z * se)
        worst = float(np.max((meas.curve / pred.curve)[pred.k > 0]))
        if bad.any():
            return f"VIOLATED at {int(bad.sum())}/{bad.size} k (first k={int(pred.k[bad][0])})", False
        return f"holds at {bad.size}/{bad.size} k (max ratio {worst:.2g} at k>0)", True


@dataclass(frozen=True)
class Zero:
    """Exact zero up to rounding: |m| <= atol."""

    atol: float = 1e-12

    def __call__(self, pred: Outcome, meas: Outcome) -> tuple[str, bool]:
        ok = abs(meas.value - pred.value) <= self.atol
        return f"{'exact' if ok else 'FAIL'} (|m| {'<=' if ok else '>'} {self.atol:.0e})", bool(ok)


def _json(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_json(x) for x in v]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    return v


@dataclass(frozen=True)
class Claim:
    """A claim of DESIGN with its default configuration, prediction, measurement and verdict rule.

    `predict` and `measure` take the configuration and return an `Outcome`; `verdict(pred, meas)`
    returns (text, passed). `quick` marks the cheap claims run by `bkd check --quick`.
    """

    id: str
    statement: str
    tags: tuple[str, ...]
    config: Mapping[str, Any]
    predict: Callable[[Mapping[str, Any]], Outcome]
    measure: Callable[[Mapping[str, Any]], Outcome]
    verdict: Callable[[Outcome, Outcome], tuple[str, bool]]
    quick: bool = False

    def check(self) -> dict[str, Any]:
        """Predict, measure and judge; an exception becomes verdict "error: ..." with passed False."""
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"claim": self.id, "statement": self.statement, "tags": list(self.tags),
                               "configuration": _json(dict(self.config)), "predicted": None, "predicted_se": None,
                               "measured": None, "measured_se": None, "ratio": None}
        try:
            pred, meas = self.predict(self.config), self.measure(self.config)
            verdict, passed = self.verdict(pred, meas)
            rec.update(predicted=float(pred.value), predicted_se=float(pred.se), measured=float(meas.value),
                       measured_se=float(meas.se), ratio=float(meas.value / pred.value) if pred.value else None,
                       details=_json({**pred.info, **meas.info}))
        except ValueError as err:
            verdict, passed = f"error: {err}", False
        rec.update(verdict=verdict, passed=bool(passed), seconds=round(time.perf_counter() - t0, 3))
        return rec
