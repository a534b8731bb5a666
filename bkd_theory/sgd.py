"""`sgd.run`: the vectorised SGD loop of DESIGN 5 (`bkd_theory.engine` holds it)."""
from __future__ import annotations

from .engine import PAGE_SAMPLES, Feed, RunConfig, build, parse_schedule, run
from .records import Run

__all__ = ["Feed", "PAGE_SAMPLES", "Run", "RunConfig", "build", "parse_schedule", "run"]
