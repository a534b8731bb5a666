"""The THEOREMS registry: every claim of DESIGN 2.3-2.8 with a prediction, a measurement and a verdict.

A `Claim` holds a one-line statement, its DESIGN tags, a small default configuration (plain data),
`predict(config)` (the theory API of this package), `measure(config)` (the instrumented SGD loop,
or a direct Monte Carlo through the student API and the instruments) and a verdict rule
(`Claim`, `Outcome` and the rules live in `verdicts`, the claims themselves in `claims`):

- `Equal`: |measured - predicted| <= 4 SE (SEs of both sides combined), or within a stated relative
  tolerance where the theory is asymptotic (E17 10 %, E18 15 %, E19 10 %), as `theory.compare` does;
- `Below` (bounds T1-T4): measured <= bound + 4 SE at every recorded k;
- `Zero` (Prop. 2): |measured| <= an absolute rounding tolerance.

`Claim.check()` returns the record {claim, statement, tags, configuration, predicted, predicted_se,
measured, measured_se, ratio, verdict, passed, seconds, details}; `check_claims` walks the registry
(`bkd check`) and `format_table` prints its records. Seeds are fixed, so records are deterministic;
the default configurations and why they were chosen are described in `claims`.
"""
from __future__ import annotations

from typing import Any, Callable

from .claims import CLAIMS
from .verdicts import Z, Below, Claim, Equal, Outcome, Zero

__all__ = ["THEOREMS", "Below", "Claim", "Equal", "Outcome", "Z", "Zero", "check_claims", "format_table",
           "select"]

THEOREMS: dict[str, Claim] = {c.id: c for c in CLAIMS}


def select(only: str | list[str] | None = None, quick: bool = False) -> list[Claim]:
    """The claims named in `only` (comma-separated ids or a list; default all), in registry order."""
    ids = [s.strip() for s in only.split(",") if s.strip()] if isinstance(only, str) else list(only or [])
    unknown = [i for i in ids if i not in THEOREMS]
    if unknown:
        raise ValueError(f"only: unknown claim id(s) {unknown}; known: {', '.join(THEOREMS)}")
    claims = [c for c in THEOREMS.values() if (not ids or c.id in ids) and (c.quick or not quick)]
    if not claims:
        quick_ids = ", ".join(c.id for c in THEOREMS.values() if c.quick)
        raise ValueError(f"only: no quick claim among {ids}; quick claims: {quick_ids}")
    return claims


def check_claims(only: str | list[str] | None = None, quick: bool = False,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run `select(only, quick)` and return their records (`Claim.check`), calling `progress(record)` after each."""
    out = []
    for claim in select(only, quick):
        out.append(claim.check())
        if progress is not None:
            progress(out[-1])
    return out


def _describe(cfg: Mapping[str, Any]) -> str:
    parts = [cfg.get("task", ""), f"{cfg.get('student', 'linear')}/{cfg.get('gauge', 'pinned')}", cfg.get("teacher", "")]
    if "gammas" in cfg:
        parts.append(f"gamma={min(cfg['gammas']):g}..{max(cfg['gammas']):g}")
    elif "gamma" in cfg:
        parts.append(f"gamma={cfg['gamma']:g}")
    for key, name in (("batch", "b"), ("n", "n"), ("chains", "R"), ("steps", "k")):
        if key in cfg and not (key == "batch" and cfg[key] == 1):
            parts.append(f"{name}={cfg[key]}")
    return " ".join(str(p) for p in parts if p)


def format_table(records: list[dict[str, Any]]) -> str:
    """Aligned text table: claim, configuration, predicted, measured +- SE, ratio, verdict."""
    g = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    rows = [("claim", "configuration", "predicted", "measured +- SE", "ratio", "verdict", "s")]
    for r in records:
        meas = "-" if r["measured"] is None else f"{r['measured']:.4g} +- {r['measured_se']:.2g}"
        rows.append((r["claim"], _describe(r["configuration"]), g(r["predicted"]), meas, g(r["ratio"]), r["verdict"],
                     f"{r['seconds']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
