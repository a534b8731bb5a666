"""The one claims engine (DESIGN 2.9, 4): every claim is a kind in `KINDS` with its recipes and
rule; `bkd check`, `theory.compare`, every figure and `figures/README.md` read it.

    from bkd_theory import claims
    claims.make("E17", gamma=0.05, teacher="dirichlet:1").check().to_dict()
    records = claims.check_claims(quick=True)
    print(claims.format_table(records))
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

from . import recipes
from .base import KINDS, Claim, Kind, Record, check, defaults, make, register_claim

# every module of this package registers its kinds on import: a new claim is one new file here
for _mod in pkgutil.iter_modules(__path__):  # alphabetical, so the registry order is fixed
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["KINDS", "Claim", "Kind", "Record", "check", "check_claims", "defaults", "format_table", "make", "recipes",
           "register_claim"]


def check_claims(only: str | list[str] | None = None, quick: bool = False,
                 progress: Callable[[Record], None] | None = None) -> list[Record]:
    """Check `defaults(only, quick)` in registry order, calling `progress(record)` after each."""
    out = []
    for claim in defaults(only, quick):
        out.append(claim.check())
        if progress is not None:
            progress(out[-1])
    return out


def _describe(cfg: dict[str, Any]) -> str:
    parts = [cfg.get("task", ""), f"{cfg.get('student', 'linear')}/{cfg.get('gauge', 'pinned')}", cfg.get("teacher", "")]
    if "gammas" in cfg:
        parts.append(f"gamma={min(cfg['gammas']):g}..{max(cfg['gammas']):g}")
    elif "gamma" in cfg:
        parts.append(f"gamma={cfg['gamma']:g}")
    for key, name in (("batch", "b"), ("n", "n"), ("chains", "R"), ("steps", "k")):
        if cfg.get(key) is not None and not (key == "batch" and cfg[key] == 1):
            parts.append(f"{name}={cfg[key]}")
    return " ".join(str(p) for p in parts if p)


def format_table(records: list[Record]) -> str:
    """Aligned text table: claim, configuration, predicted +- SE, measured +- SE, z, verdict, seconds."""
    def pm(v: Any, se: Any) -> str:
        return "-" if v is None else f"{v:.5g} +- {se:.2g}"

    rows = [("claim", "configuration", "predicted", "measured", "z", "verdict", "s")]
    for rec in records:
        r = rec.to_dict()
        rows.append((r["claim"], _describe(r["configuration"]), pm(r["predicted"], r["predicted_se"]),
                     pm(r["measured"], r["measured_se"]), "-" if r["z"] is None else f"{r['z']:+.1f}", r["verdict"],
                     f"{r['seconds']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
