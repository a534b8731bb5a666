"""The vectorised SGD loop over R independent chains (DESIGN 2.7, 4; STYLE 1, 2).

Update of chain r at step k (heavy-ball momentum beta, step size gamma_k from the schedule):

    g_k = (1/b) sum_i grad l(theta_k; x_i, t_i)      (E1, minibatch mean; `bkd_theory.losses`)
    v_{k+1} = beta v_k + g_k,   theta_{k+1} = theta_k - gamma_k v_{k+1}      (beta = 0: plain SGD)

Randomness of chain r comes only from `rng.chain_streams(seed, first_chain + r)`: its training set
and online inputs (`data`), teacher noise (`teacher`), minibatch indices (`sgd`) and initial
parameters (`init`). So chain r follows the same trajectory alone as inside a batch of chains.
Inputs and targets do not depend on theta, so they are drawn per chain one *page* at a time
(`PAGE_SAMPLES` samples = max(1, PAGE_SAMPLES // b) steps) and stacked over chains; the page is
part of the stream layout (like a spawn key): it depends on b only, never on R or `steps`.

A chain whose parameters become non-finite (a non-finite minibatch loss makes its gradient, and so
its parameters, non-finite) is frozen at its last finite value and marked inactive; its step is
recorded and the other chains continue. The loop calls the instruments whose schedule
is due with a `StepContext` and stores what they return; it never looks at what they compute.
`ctx.theta` is one of the loop's two parameter buffers: valid during `observe`; copy it to keep it.
"""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

import synthetic
from synthetic import validation

from . import teachers as teachers_mod
from .targets import OnInputs, TargetSource
from .config import Config, Features, Gauge, Init, NoiseMode, Regime, Sampling
from .instruments import EvalSet, Instrument, StepContext
from .records import Run, versions
from .rng import chain_streams, run_streams
from .students import Linear, Student, as_dtype, make_student, parse_student_spec

PAGE_SAMPLES = 1024


def parse_schedule(spec: str) -> Callable[[int], float]:
    """Return the step-size factor c(k) of a schedule spec, gamma_k = gamma c(k).

    Specs: "constant" (1); "inverse:K0" (1 / (1 + k / K0)); "step:EVERY:FACTOR" (FACTOR^(k // EVERY)).
    """
    parts = str(spec).strip().lower().split(":")
    try:
        if parts == ["constant"]:
            return lambda k: 1.0
        if parts[0] == "inverse" and len(parts) == 2:
            k0 = validation.positive("schedule k0", float(parts[1]))
            return lambda k: 1.0 / (1.0 + k / k0)
        if parts[0] == "step" and len(parts) == 3:
            every = validation.positive_int("schedule every", float(parts[1]))
            factor = validation.in_interval("schedule factor", float(parts[2]), 0.0, 1.0, closed=True)
            return lambda k: factor ** (k // every)
    except ValueError as err:
        if "schedule" in str(err):
            raise
    raise ValueError(f"schedule must be 'constant', 'inverse:K0' or 'step:EVERY:FACTOR', got {spec!r}")


@dataclasses.dataclass(frozen=True)
class RunConfig(Config):
    """Everything that defines one run; stored in full with its result (STYLE 8).

    `task`, `student` and `teacher` are names/specs (DESIGN 5). `n` is the training-set size of the
    finite regime (None online). `noise` is the teacher noise mode of a finite set (fresh or frozen).
    """

    task: str = "triangle"
    standardize: bool = False
    student: str = "linear"
    gauge: Gauge = Gauge.PINNED
    features: Features = Features.LINEAR
    teacher: str = "bcp"
    gamma: float = 0.1
    schedule: str = "constant"
    batch: int = 1
    momentum: float = 0.0
    lam: float = 1.0
    regime: Regime = Regime.ONLINE
    n: int | None = None
    sampling: Sampling = Sampling.REPLACEMENT
    noise: NoiseMode = NoiseMode.FRESH
    init: Init = Init.PERTURBED
    init_scale: float = 0.5
    steps: int = 1000
    chains: int = 64
    first_chain: int = 0
    seed: int = 0
    eval_every: int = 100
    eval_n: int = 2000
    dtype: str = "float64"

    def __post_init__(self) -> None:
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        for name, enum in (("gauge", Gauge), ("features", Features), ("regime", Regime), ("sampling", Sampling), ("noise", NoiseMode), ("init", Init)):
            put(name, enum.coerce(getattr(self, name), name))
        for name in ("task", "student", "teacher", "schedule", "dtype"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        put("gamma", validation.positive("gamma", self.gamma))
        put("momentum", validation.in_interval("momentum", self.momentum, 0.0, 1.0))
        if self.momentum >= 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        put("lam", validation.in_interval("lam", self.lam, 0.0, 1.0))
        put("init_scale", validation.nonnegative("init_scale", self.init_scale))
        for name in ("batch", "steps", "chains", "eval_every", "eval_n"):
            put(name, validation.positive_int(name, getattr(self, name)))
        for name in ("first_chain", "seed"):
            put(name, validation.positive_int(name, getattr(self, name), minimum=0))
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise ValueError(f"standardize must be True or False, got {self.standardize!r}")
        put("standardize", bool(self.standardize))
        put("dtype", str(as_dtype(self.dtype)).removeprefix("torch."))
        parse_schedule(self.schedule)
        parse_student_spec(self.student)
        if self.regime == Regime.FINITE:
            if self.n is None:
                raise ValueError("n (training-set size) is required with regime='finite'")
            put("n", validation.positive_int("n", self.n))
            if self.n < self.batch:
                raise ValueError(f"n must be >= batch ({self.batch}) with regime='finite', got {self.n}")
            if self.noise == NoiseMode.ONLINE:
                raise ValueError("noise must be 'fresh' or 'frozen' with regime='finite', got 'online'")
        else:
            if self.n is not None:
                raise ValueError(f"n is only used with regime='finite' (online draws fresh points), got n={self.n!r}")
            if self.noise == NoiseMode.FROZEN:
                raise ValueError("noise='frozen' needs regime='finite' (online targets are always fresh)")


class _Feed:
    """Pages of minibatches `x [L, R, b, d]`, `t [L, R, b, K]`; chain r draws from its own streams.

    A page holds `steps_per_page` steps of every chain, laid out step-major so that each step's
    minibatch `[R, b, ...]` is contiguous. Memory: R * PAGE_SAMPLES * (d + K) numbers of the run's
    dtype per page (two pages with prefetch), e.g. ~140 MB for R = 1000 on the paper task in float32.
    """

    def __init__(self, cfg: RunConfig, task, teacher, streams, dtype: torch.dtype):
        self.cfg, self.task, self.streams, self.dtype = cfg, task, streams, dtype
        self.b = cfg.batch
        self.steps_per_page = max(1, PAGE_SAMPLES // self.b)
        if getattr(teacher, "input_dependent", False):  # a trained teacher's p~(x) in place of p
            self.probs, self.law = teacher.probs, teacher.law
        else:
            self.probs, self.law = task.bcp, teacher
        if cfg.regime == Regime.FINITE:
            x_train, self.sources, self.queues = [], [], []
            for s in streams:
                x, y = task.sample(cfg.n, s.data)
                x_train.append(x)
                self.sources.append(TargetSource(self.law, self.probs(x), y, cfg.noise, s.teacher))
                self.queues.append(np.zeros(0, dtype=np.int64))
            self.x_train = torch.as_tensor(np.stack(x_train), dtype=dtype)  # [R, n, d]

    def _indices(self, r: int, m: int) -> np.ndarray:
        s = self.streams[r]
        if self.cfg.sampling == Sampling.REPLACEMENT:
            return s.sgd.integers(0, self.cfg.n, size=m)
        q = self.queues[r]  # epoch shuffling: successive permutations, batches may span epochs
        while len(q) < m:
            q = np.concatenate([q, s.sgd.permutation(self.cfg.n)])
        self.queues[r] = q[m:]
        return q[:m]

    def next_page(self) -> tuple[torch.Tensor, torch.Tensor]:
        L, b, R = self.steps_per_page, self.b, len(self.streams)
        m = L * b
        np_dtype = torch.empty(0, dtype=self.dtype).numpy().dtype  # cast once, on assignment
        T = np.empty((L, R, b, self.task.num_classes), dtype=np_dtype)
        if self.cfg.regime == Regime.ONLINE:
            X = np.empty((L, R, b, self.task.dim), dtype=np_dtype)
            for r, s in enumerate(self.streams):
                # everything per chain, even pure functions of x: BLAS results for a row can depend
                # on how many rows are in the call, and chain r must not depend on R
                x, y = self.task.sample(m, s.data)
                X[:, r] = x.reshape(L, b, -1)
                T[:, r] = self.law.sample(self.probs(x), y, s.teacher).reshape(L, b, -1)
            x = torch.from_numpy(X)
        else:
            idx = np.stack([self._indices(r, m) for r in range(R)])  # [R, m]
            for r, (src, s) in enumerate(zip(self.sources, self.streams)):
                T[:, r] = src(idx[r], s.teacher).reshape(L, b, -1)
            x = self.x_train[torch.arange(R)[:, None], torch.from_numpy(idx)]
            x = x.reshape(R, L, b, -1).transpose(0, 1).contiguous()
        return x, torch.from_numpy(T)


def default_instruments(config: RunConfig) -> list[Instrument]:
    """Return the standard instruments, observing every `eval_every` steps plus steps 0 and `steps`."""
    from .instruments import default_instruments as standard

    return standard(config.eval_every, config.steps)


def _resolve(config, student, teacher, overrides) -> tuple[RunConfig, Any, Student, Any]:
    """Return (config, task, student, teacher) from a RunConfig and/or objects (DESIGN 5)."""
    fields: dict[str, Any] = {}
    if config is None or isinstance(config, RunConfig):
        base, task_obj = ({} if config is None else config.to_dict()), None
    elif hasattr(config, "sample") and hasattr(config, "log_bcp"):  # a Task object
        base, task_obj = {}, config
        fields["task"] = str(getattr(task_obj, "name", type(task_obj).__name__))
    else:
        raise ValueError(f"config must be a RunConfig, None, or a Task object, got {type(config).__name__}")
    if isinstance(student, Student):
        if task_obj is None:
            raise ValueError("a Student object needs the Task object it was built for as first argument")
        fields.update(student=student.spec, dtype=str(student.dtype).removeprefix("torch."))
        if isinstance(student, Linear):
            fields.update(gauge=student.gauge.value, features=student.features.value)
    elif student is not None:
        fields["student"] = student
    if teacher is not None:
        fields["teacher"] = teacher.spec if getattr(teacher, "input_dependent", False) else teachers_mod.parse_teacher(teacher).spec
    for key, value in overrides.items():
        if key in fields and str(getattr(value, "value", value)) != str(fields[key]):
            raise ValueError(f"{key} is given by an argument ({fields[key]!s}) and as a keyword ({value!s})")
    cfg = RunConfig.from_dict({**base, **overrides, **fields})
    dtype = as_dtype(cfg.dtype)
    if task_obj is None:
        validation.one_of("task", cfg.task, synthetic.TASK_NAMES)
        task_obj = synthetic.make_task(cfg.task, standardize=cfg.standardize)
    if not isinstance(student, Student):
        student = make_student(cfg.student, task_obj, gauge=cfg.gauge, features=cfg.features, dtype=dtype)
    elif student.dtype != dtype:
        raise ValueError(f"dtype={cfg.dtype!r} differs from the student's dtype {student.dtype}")
    if getattr(teacher, "input_dependent", False):  # trained teacher (bayesian.py), mixed with labels if lam < 1
        return cfg, task_obj, student, OnInputs(teacher, cfg.lam)
    teacher_obj = teachers_mod.parse_teacher(cfg.teacher if teacher is None else teacher)
    if cfg.lam < 1.0:
        teacher_obj = teachers_mod.Mixture(cfg.lam, teacher_obj)
    return cfg, task_obj, student, teacher_obj


def run(
    config: RunConfig | Any | None = None,
    student: Student | str | None = None,
    teacher: Any | None = None,
    *,
    instruments: Sequence[Instrument] | None = None,
    progress: bool = False,
    prefetch: bool = True,
    threads: int | None = 1,
    **overrides: Any,
) -> Run:
    """Run R independent SGD chains and record the instruments (DESIGN 2.7, 2.9).

    Call as `run(RunConfig(...))`, `run(gamma=0.05, teacher="onehot", ...)` (fields of `RunConfig`),
    or with objects `run(task, student, teacher, gamma=..., steps=...)` (DESIGN 5).

    Args:
        config: a `RunConfig`, None (defaults + `overrides`), or a Task object.
        student: with a Task object: a `Student` or a spec string.
        teacher: with a Task object: a `Teacher` or a spec string. `lam < 1` wraps it in
            `Mixture(lam, teacher)` (the KD objective).
        instruments: what to measure (default `default_instruments(config)`).
        progress: show a tqdm progress bar.
        prefetch: draw the next page of inputs and targets in a background thread (same results).
        threads: torch intra-op threads while the loop runs (restored afterwards); None leaves the
            setting alone. The default 1 is fastest here: per-step tensors are small, and a parallel
            region costs milliseconds when a core is busy (e.g. with the prefetch thread).
        **overrides: `RunConfig` fields.

    Returns:
        The `Run` record: config, versions, wall time, diverged steps `[R]`, final theta `[R, P]`,
        and every instrument's values per recorded step and chain.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(validation.positive_int("threads", threads))
    try:
        return _run(config, student, teacher, instruments, progress, prefetch, overrides)
    finally:
        torch.set_num_threads(previous)


def _run(config, student, teacher, instruments, progress: bool, prefetch: bool, overrides: dict) -> Run:
    cfg, task, student, teacher = _resolve(config, student, teacher, overrides)
    instruments = list(default_instruments(cfg) if instruments is None else instruments)
    for ins in instruments:
        if not isinstance(ins, Instrument):
            raise ValueError(f"instruments must follow the Instrument protocol (name, needs, schedule, observe), got {ins!r}")
    dtype, R = student.dtype, cfg.chains
    t0 = time.perf_counter()
    streams = [chain_streams(cfg.seed, cfg.first_chain + r) for r in range(R)]
    shared = run_streams(cfg.seed)
    eval_set = EvalSet.from_task(task, cfg.eval_n, shared.data, dtype)
    try:
        theta_star = student.optimum(task)
    except ValueError:
        theta_star = None
    if theta_star is None and cfg.init in (Init.OPTIMUM, Init.PERTURBED):
        raise ValueError(f"init={cfg.init.value!r} needs a realizable student; {student.spec!r} has no theta* on task {cfg.task!r}")
    theta = student.init_params(cfg.init, R, task, streams, cfg.init_scale)
    feed = _Feed(cfg, task, teacher, streams, dtype)
    factor = parse_schedule(cfg.schedule)
    beta = cfg.momentum
    velocity = torch.zeros_like(theta) if beta > 0.0 else None
    grad_buf, spare = torch.empty_like(theta), torch.empty_like(theta)
    active = torch.ones(R, dtype=torch.bool)
    diverged = torch.full((R,), -1, dtype=torch.int64)
    records: dict[str, tuple[list[int], list[np.ndarray]]] = {}

    def observe(step: int) -> None:
        due = [ins for ins in instruments if ins.schedule(step)]
        if not due:
            return
        ctx = StepContext(
            step=step, gamma=cfg.gamma * factor(max(step - 1, 0)), theta=theta, theta_star=theta_star,
            student=student, task=task, teacher=teacher, batch_size=cfg.batch, eval_set=eval_set,
            active=active.clone(), probe=shared.probe,
        )
        for ins in due:
            for quantity, values in ins.observe(ctx).items():
                steps_q, vals_q = records.setdefault(quantity, ([], []))
                steps_q.append(step)
                vals_q.append(torch.as_tensor(values).detach().to(torch.float64).reshape(R).numpy().copy())

    bar = tqdm(total=cfg.steps, disable=not progress, desc=f"bkd run {cfg.task}/{student.spec}/{teacher.spec}", unit="step")
    observe(0)
    k, any_inactive = 0, False
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bkd-feed") as pool:
        # the next page is drawn in the background while this one trains; only that thread touches
        # the chain streams, in the same order as without it, so results do not depend on `prefetch`
        pending = pool.submit(feed.next_page) if prefetch else None
        while k < cfg.steps:
            xs, ts = pending.result() if prefetch else feed.next_page()
            todo = min(len(xs), cfg.steps - k)
            if prefetch and k + todo < cfg.steps:
                pending = pool.submit(feed.next_page)
            for i in range(todo):
                gamma_k = cfg.gamma * factor(k)
                if beta == 0.0:  # plain SGD: the student fuses its outer products into the update
                    new = student.sgd_step(theta, xs[i], ts[i], gamma_k, out=spare)
                else:
                    velocity.mul_(beta).add_(student.batch_grad(theta, xs[i], ts[i], out=grad_buf))  # v = beta v + g
                    new = torch.sub(theta, torch.mul(velocity, gamma_k, out=grad_buf), out=spare)  # theta - gamma v
                finite = torch.isfinite(new.sum(dim=1))  # one pass: a NaN or inf entry makes the sum non-finite
                if any_inactive or not bool(finite.all()):
                    diverged[active & ~finite] = k + 1
                    active = active & finite
                    any_inactive = True
                    new.copy_(torch.where(active[:, None], new, theta))  # stopped chains keep their last finite theta
                theta, spare = new, theta  # double buffer: no allocation per step
                k += 1
                observe(k)
            bar.update(todo)
    bar.close()
    return Run(
        config=cfg.to_dict(), seed=cfg.seed, versions=versions(), wall_time=time.perf_counter() - t0,
        diverged_step=diverged.numpy().copy(), theta_final=theta.detach().to(torch.float64).numpy().copy(),
        chains=np.arange(cfg.first_chain, cfg.first_chain + R), records={q: (np.asarray(s), np.stack(v)) for q, (s, v) in records.items()},
    )
