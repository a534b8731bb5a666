"""The engine (DESIGN 4): run configurations, the one name -> objects seam, the data feed, the
optimizers as update rules, and the vectorised loop.

- `RunConfig`, `parse_schedule`, `SCHEDULES` (`config`);
- `build` / `Setup` (`build`): the ONE place names become objects (run, CLI, sweeps, claims);
- `Feed`, `PAGE_SAMPLES` (`feed`); `OPTIMIZERS`, `UpdateRule` (`optim`);
- `run`, `Loop` (`loop`); `run_many`, several runs stacked into shared loops (`stack`); the divergence rule (`divergence`); resource estimates and limits
  (`resources`: `Limits`, `run_cost`, `ResourceError`, a `ConfigError`).
"""
from __future__ import annotations

from .config import SCHEDULES, RunConfig, parse_schedule
from .optim import OPTIMIZERS, SGD, UpdateRule, build_optimizer, register_optimizer
from .build import Setup, build, student_options
from .feed import PAGE_SAMPLES, Feed
from .loop import STEP_FIELDS, Loop, run
from .stack import run_many
from .divergence import Divergence
from .resources import Cost, Limits, ResourceError, predict_cost, run_cost
from synthetic.validation import ConfigError

__all__ = ["ConfigError", "Cost", "Divergence", "Limits", "ResourceError", "predict_cost", "run_cost",
           "Feed", "Loop", "OPTIMIZERS", "PAGE_SAMPLES", "RunConfig", "SCHEDULES", "SGD", "Setup", "UpdateRule",
           "STEP_FIELDS", "build", "build_optimizer", "parse_schedule", "register_optimizer", "run", "run_many",
           "student_options"]
