"""`run_many`: several runs, stacked into shared loops where they take the same update (DESIGN 4).

An update of a few chains costs little more than its per-operation overhead, so runs that differ
only in what the chains see (teacher, lam, seed, chains, training set, noise, evaluation set,
instruments) are run as one `Loop` over their stacked chains. Every operation of an update is
chain-local, each chain's row starts on the same byte boundary wherever it sits (`engine.rows`),
and each run keeps its own streams, feed, evaluation set and instruments, so every record is bit
for bit that of `run` on the same configuration (tested); only the wall time is shared.

What it saves depends on how the update's cost grows with the chains (`benchmarks/bench_stack.py`,
one thread, 8 runs stacked against the same 8 one at a time): 2.2x for the linear student (32
chains each, paper task), where a step is operation overhead; 1.1x for the 2x128 MLP with momentum
(6 chains each, F1's configuration), whose step is bound by passes over the parameters that leave
the core's cache beyond a few chains (plain SGD, whose update is fused into the backward pass,
goes from 22k chain-steps/s at 6 chains to 80k at 48).

Runs stack when they agree on `STEP_FIELDS` and on the task and student objects (a name builds one
object per distinct spec; objects given are compared by identity), in input order, while the
stack's parameters stay within `STACK_BYTES` (4 MB, about 48 float32 MLP chains: beyond it even
plain SGD falls again, to 32k chain-steps/s at 192 chains).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import torch

from synthetic import validation
from synthetic.base import Task

from ..records import Run
from ..students import Student
from .build import Setup, build
from .config import RunConfig
from .loop import STEP_FIELDS, Loop
from .resources import Cost, Limits, check, run_cost

__all__ = ["STACK_BYTES", "plan", "run_many"]

#: the largest stack: chains x parameters x bytes per number of one copy of the stacked parameters
STACK_BYTES = 4 * 2**20


def _setup(item: RunConfig | Mapping[str, Any], i: int) -> tuple[Setup, tuple[Any, Any]]:
    """`build` of one item (a `RunConfig`, or keywords of `build`: fields and task/student/teacher
    objects) and the objects it was given (None where a name was)."""
    if isinstance(item, RunConfig):
        return build(item), (None, None)
    if not isinstance(item, Mapping):
        raise ValueError(f"configs[{i}] must be a RunConfig or a mapping of RunConfig fields, got {type(item).__name__}")
    fields = dict(item)
    task = fields.pop("task") if isinstance(fields.get("task"), Task) else None
    student = fields.get("student") if isinstance(fields.get("student"), Student) else None
    return build(task, **fields), (task, student)


def _shared(setups: list[Setup], given: list[tuple[Any, Any]]) -> list[Setup]:
    """The setups with one task and one student object per distinct name (objects given stay)."""
    tasks: dict[Any, Any] = {}
    students: dict[Any, Any] = {}
    out = []
    for s, (task_obj, student_obj) in zip(setups, given):
        c = s.config
        task = task_obj if task_obj is not None else tasks.setdefault((c.task, c.standardize), s.task)
        key = (id(task), c.student, c.gauge, c.features, c.dtype, c.device)
        student = student_obj if student_obj is not None else students.setdefault(key, s.student)
        out.append(dataclasses.replace(s, task=task, student=student))
    return out


def plan(setups: Sequence[Setup], stack_bytes: float = STACK_BYTES) -> list[list[int]]:
    """The stacks: lists of indices into `setups`, each in input order (module docstring)."""
    filling: dict[tuple, tuple[list[int], float]] = {}  # per update, the stack still open and its bytes
    order: list[list[int]] = []
    for i, s in enumerate(setups):
        key = (id(s.task), id(s.student), *(getattr(s.config, f) for f in STEP_FIELDS))
        size = s.config.chains * s.student.num_params * torch.empty(0, dtype=s.student.dtype).element_size()
        stack, used = filling.get(key, (None, 0.0))
        if stack is not None and used + size <= stack_bytes:
            stack.append(i)
            filling[key] = (stack, used + size)
            continue
        filling[key] = ([i], size)
        order.append(filling[key][0])
    return order


def _check_limits(setups: list[Setup], stack: list[int], limits: Limits | None) -> None:
    """Each run within `limits` (as `run`), and the stack's summed memory."""
    costs = [check(run_cost(setups[i], f"configs[{i}]"), limits) for i in stack]
    if len(costs) > 1:
        check(Cost(sum(c.memory for c in costs), max(c.chain_steps for c in costs), sum(c.seconds for c in costs),
                   f"the {len(costs)} stacked runs configs[{stack[0]}, ...]"), limits)


def run_many(configs: Sequence[RunConfig | Mapping[str, Any]], *, instruments: Sequence[Any] | None = None,
             progress: bool = False, prefetch: bool = True, threads: int | None = 1,
             limits: Limits | None = Limits(), stack_bytes: float = STACK_BYTES) -> list[Run]:
    """Several runs, stacked into shared loops where they take the same update (module docstring).

    Args:
        configs: each a `RunConfig` or a mapping of the keywords of `engine.build` (RunConfig fields;
            "task", "student", "teacher" may be objects).
        instruments: None (every run: `instruments.default_instruments`) or one entry per config,
            each None or a sequence as `run`'s `instruments`.
        progress, prefetch, threads, limits: as `run`; every run is checked against `limits`, and
            each stack's summed memory too.
        stack_bytes: the largest stack's parameters (bytes of one copy); 0 runs each alone.

    Returns:
        One `Run` per config, in their order, each bit for bit that of `run` on that config (its
        `wall_time` is its stack's). Raises ValueError for a bad configuration before any work.
    """
    if isinstance(configs, (RunConfig, Mapping)) or not isinstance(configs, Sequence):
        raise ValueError(f"configs must be a sequence of RunConfigs or mappings, got {type(configs).__name__}")
    if isinstance(stack_bytes, bool) or not isinstance(stack_bytes, (int, float)) or not stack_bytes >= 0:
        raise ValueError(f"stack_bytes must be a number >= 0 (bytes; 0 runs each config alone), got {stack_bytes!r}")
    chosen = [None] * len(configs) if instruments is None else list(instruments)
    if len(chosen) != len(configs):
        raise ValueError(f"instruments must give one entry per config (None for the defaults), got {len(chosen)} "
                         f"for {len(configs)} configs")
    built = [_setup(c, i) for i, c in enumerate(configs)]
    setups = _shared([s for s, _ in built], [g for _, g in built])
    stacks = plan(setups, stack_bytes)
    for stack in stacks:
        _check_limits(setups, stack, limits)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(validation.positive_int("threads", threads))
    out: list[Run | None] = [None] * len(setups)
    try:
        for stack in stacks:
            runs = Loop([setups[i] for i in stack], [chosen[i] for i in stack]).execute(progress, prefetch)
            for i, r in zip(stack, runs):
                out[i] = r
    finally:
        torch.set_num_threads(previous)
    return out  # type: ignore[return-value]
