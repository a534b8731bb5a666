"""Memory and time estimates before work, and the limits that refuse a run too large to finish.

`run_cost(setup)` estimates the peak memory (beyond the interpreter and its libraries, ~0.3 GB)
and the wall time of one run from its sizes: chains R, steps, batch b, eval_n N, the training-set
size n, the student's P and hidden widths, and the number of teacher draws behind one target (the
product of the S of nested `mc:S:...` teachers). `predict_cost` does the same for `theory.predict`
(the calL training set n, the Monte Carlo nodes held at once, the P x P matrices). The estimates
are rough (time within a factor ~3 on a laptop core) and err on the high side for memory; they
exist to refuse, in a second and with a message giving the estimate, what would otherwise run out
of memory or run for days.

`Limits` holds the limits (`--max-memory`, `--max-chain-steps`, `--max-cells`; `force` turns them
off) and `check(cost, limits)` raises `ResourceError` (a `ConfigError`, so a `ValueError`) naming
the limit, the estimate, its largest parts and the parameters behind them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from synthetic.validation import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .build import Setup

__all__ = ["DEFAULT_MAX_CELLS", "DEFAULT_MAX_CHAIN_STEPS", "DEFAULT_MAX_MEMORY", "Cost", "Limits", "ResourceError",
           "check", "format_bytes", "format_seconds", "parse_size", "predict_cost", "run_cost", "teacher_draws"]

#: defaults that fit a laptop: 4 GiB of working memory, 1e9 chain-steps (about an hour for the
#: triangle preset's linear student, a day for the paper's 2 x 128 MLP), 100,000 sweep cells
DEFAULT_MAX_MEMORY = 4 * 2**30
DEFAULT_MAX_CHAIN_STEPS = 10**9
DEFAULT_MAX_CELLS = 100_000
#: inputs per page of the feed (`engine.feed.PAGE_SAMPLES`) and probe points of the gradient instruments
_PAGE, _PROBE = 1024, 128
#: Monte Carlo nodes of the relaxation check and of the theory's correction, and the chunk of predict
_RELAX_MC, _DENSE_MAX = 4096, 3000
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


class ResourceError(ConfigError):
    """A run, prediction or sweep whose estimated memory or work exceeds a limit (`Limits`)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits checked before work.

    Attributes:
        max_memory: bytes of estimated peak working memory (`--max-memory`, e.g. "8G").
        max_chain_steps: chains x steps of one run (`--max-chain-steps`).
        max_cells: cells of one sweep, counted before the grid is expanded (`--max-cells`).
        force: skip every check (`--force`).
    """

    max_memory: float = DEFAULT_MAX_MEMORY
    max_chain_steps: float = DEFAULT_MAX_CHAIN_STEPS
    max_cells: float = DEFAULT_MAX_CELLS
    force: bool = False

    def __post_init__(self) -> None:
        for name, flag in (("max_memory", "--max-memory"), ("max_chain_steps", "--max-chain-steps"),
                           ("max_cells", "--max-cells")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"{name} ({flag}) must be a number > 0, got {v!r}")
        if not isinstance(self.force, bool):
            raise ConfigError(f"force must be True or False, got {self.force!r}")


@dataclass(frozen=True)
class Cost:
    """An estimate: peak memory in bytes with its parts, chain-steps, seconds.

    Attributes:
        memory: estimated peak working memory (bytes). parts: {part: (bytes, the parameters behind it)}.
        chain_steps: R x steps (0 for a prediction). seconds: estimated wall time. what: "this run", ...
    """

    memory: float
    chain_steps: float
    seconds: float
    what: str
    parts: dict[str, tuple[float, str]] = field(default_factory=dict)

    def describe(self) -> str:
        """One sentence: memory (largest parts first), chain-steps and time."""
        top = sorted(self.parts.items(), key=lambda kv: -kv[1][0])[:3]
        parts = "; ".join(f"{k} {format_bytes(b)} ({why})" for k, (b, why) in top if b >= 1e6)
        steps = f", {self.chain_steps:.3g} chain-steps" if self.chain_steps else ""
        return (f"{self.what} needs about {format_bytes(self.memory)} of memory" + (f" [{parts}]" if parts else "")
                + f"{steps} and about {format_seconds(self.seconds)}")


def parse_size(text: Any, name: str = "max_memory") -> float:
    """Bytes from "4G", "512M", "1.5GiB", "2e9" or a number; ConfigError naming `name` otherwise."""
    if isinstance(text, bool):
        raise ConfigError(f"{name} must be a size like 4G, 512M or 2e9 (bytes), got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9.]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
        if not m or m.group(2) not in _UNITS:
            raise ConfigError(f"{name} must be a size like 4G, 512M or 2e9 (bytes), got {text!r}")
        try:
            value = float(m.group(1)) * _UNITS[m.group(2)]
        except ValueError:
            raise ConfigError(f"{name} must be a size like 4G, 512M or 2e9 (bytes), got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a size > 0 like 4G, got {text!r}")
    return value


def format_bytes(n: float) -> str:
    """"1.5 GiB", "300 MiB", "2.7e+03 PiB"."""
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def format_seconds(s: float) -> str:
    """"40 s", "12 min", "5.2 h", "3.1e+04 days"."""
    if s < 60:
        return f"{s:.2g} s"
    if s < 3600:
        return f"{s / 60:.2g} min"
    if s < 86400 * 2:
        return f"{s / 3600:.2g} h"
    return f"{s / 86400:.3g} days"


def teacher_draws(teacher: Any) -> float:
    """Draws of the base law behind one target: the product of S over nested `mc:S:...` teachers."""
    n, t, depth = 1.0, teacher, 0
    while t is not None and depth < 64:
        n *= float(getattr(t, "S", 1) or 1)
        t, depth = getattr(t, "base", None), depth + 1
    return n


def _student_sizes(student: Any) -> tuple[float, float]:
    """(P, sum of hidden widths) of a student (widths 0 for a linear one)."""
    widths = getattr(student, "widths", None) or ()
    return float(student.num_params), float(sum(widths))


def run_cost(setup: "Setup", what: str = "this run") -> Cost:
    """The estimated memory and time of one `Loop` over `setup` (module docstring)."""
    c, task, student = setup.config, setup.task, setup.student
    R, b, N, steps = float(c.chains), float(c.batch), float(c.eval_n), float(c.steps)
    d, K = float(task.dim), float(task.num_classes)
    P, width = _student_sizes(student)
    B = 4.0 if c.dtype == "float32" else 8.0
    S = teacher_draws(setup.teacher)
    page = max(b, _PAGE - _PAGE % b) if b <= _PAGE else b
    obs = steps / c.eval_every + 2
    optimizer = str(getattr(c, "optimizer", "sgd"))
    state = 2.0 + (4.0 if optimizer == "adam" else 2.0 if c.momentum else 0.0) + 2.0
    parts: dict[str, tuple[float, str]] = {
        "parameters": (state * R * P * B, f"chains x student {c.student}: P = {P:.3g}"),
        "minibatch pages": (2 * R * page * (d + K) * (B + 8), "chains x batch"),
        "teacher draws": (3 * page * S * (K + d) * 8, f"{S:.3g} teacher draws per target (teacher {c.teacher})"),
        "activations": (4 * R * b * (width + K + d) * B + 3 * R * b * P * B, "chains x batch x student"),
        "evaluation": (N * (d + K) * 24 + R * N * (4 * K + 2 * width) * B, "eval_n x chains"),
        "gradient probes": (1.5 * R * _PROBE * (P + width + K) * B, "chains x 128 probe points x student"),
        "records": (obs * (12 * R + 5 * N) * 8, "steps / eval_every x (chains + eval_n)"),
    }
    if student.feature_model() is None:
        parts["torch.func workspace"] = (256 * 2**20, "a student without a feature model")
    if c.n is not None:
        parts["training sets"] = (R * c.n * (d * (8 + B) + 3 * K * 8), "chains x n")
    if setup.student.num_params <= _DENSE_MAX:
        parts["relaxation check"] = (_RELAX_MC * P * K * 8 * 3 + 4 * P * P * 8, "H at theta* over 4096 inputs")
    return Cost(sum(v for v, _ in parts.values()), R * steps, _run_seconds(c, d, K, P, width, S, obs), what, parts)


def _run_seconds(c: Any, d: float, K: float, P: float, width: float, S: float, obs: float) -> float:
    """Wall time: setup (relaxation check, training sets), SGD steps (feed, teacher draws, the
    update) and observations (instruments over eval_n points and the gradient probes)."""
    R, b = float(c.chains), float(c.batch)
    setup = 0.5 + (R * c.n * 1.5e-6 if c.n is not None else 0.0)
    per_step = 2e-6 + b * (1.5e-6 + 5e-6 * (S - 1)) + P * (5e-8 + 3e-9 * b)
    per_obs = R * (c.eval_n * (K + width) * 1e-7 + _PROBE * P * 2e-8)
    return setup + R * c.steps * per_step + obs * per_obs


def predict_cost(task: Any, student: Any, teacher: Any, *, n: int | None, n_mc: int | None, calL_n: int = 10_000,
                 chunk: int = 2**17) -> Cost:
    """The estimated memory and time of `theory.predict` (Monte Carlo held `chunk` nodes at a time)."""
    d, K = float(task.dim), float(task.num_classes)
    P, width = _student_sizes(student)
    nodes = float(min(n_mc if n_mc is not None else 2**20, chunk * 8)) / 8.0
    fm = student.feature_model()
    F = float(getattr(student, "num_features", d))
    m = float(n or calL_n)
    parts: dict[str, tuple[float, str]] = {
        "calL training set": (3 * m * (d + F + 1) * 8 if fm is not None else 0.0, f"n = {m:.3g} inputs"),
        "Monte Carlo nodes": (nodes * (d + 4 * K + K * K * 3 + 2 * min(P, _DENSE_MAX) * K) * 8, "n_mc (per chunk)"),
        "dense matrices": (8 * P * P * 8 if P <= _DENSE_MAX else 0.0, "the student's P x P matrices"),
    }
    total_nodes = float(n_mc if n_mc is not None else 2**20)
    seconds = total_nodes * (K * K + P * K) * 2e-8 + m * (d + F) * 1e-8
    return Cost(sum(v for v, _ in parts.values()), 0.0, seconds, "this prediction", parts)


def check(cost: Cost, limits: Limits | None) -> Cost:
    """Return `cost` if it is within `limits` (None or force: no check); else raise ResourceError
    naming every limit it exceeds, with the estimate and its largest parts."""
    if limits is None or limits.force:
        return cost
    over = []
    if cost.chain_steps > limits.max_chain_steps:
        over.append(f"chains x steps = {cost.chain_steps:.3g} chain-steps is above --max-chain-steps "
                    f"{limits.max_chain_steps:.3g}")
    if cost.memory > limits.max_memory:
        over.append(f"memory: about {format_bytes(cost.memory)} is above --max-memory {format_bytes(limits.max_memory)}")
    if over:
        raise ResourceError("; ".join(over) + f" ({cost.describe()}); lower the sizes, raise the limit, or pass "
                            "--force (in Python: limits=None)")
    return cost
