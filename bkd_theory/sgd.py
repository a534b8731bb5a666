"""`sgd.run`: the vectorised SGD loop of DESIGN 5, and `sgd.run_many`, several runs stacked into shared
loops (`bkd_theory.engine` holds both)."""
from __future__ import annotations

from .engine import PAGE_SAMPLES, Feed, RunConfig, build, parse_schedule, run, run_many
from .records import Run

__all__ = ["Feed", "PAGE_SAMPLES", "Run", "RunConfig", "build", "parse_schedule", "run", "run_many"]
