"""The vectorised SGD loop over R independent chains (DESIGN 2.7, 4; STYLE 1, 2).

Update of chain r at step k: the optimizer's rule (`engine.optim`) on the minibatch gradient

    g_k = (1/b) sum_i grad l(theta_k; x_i, t_i)      (E1, minibatch mean; `bkd_theory.losses`)

with step size gamma_k = gamma c(k) from the schedule. Randomness of chain r comes only from
`rng.chain_streams(seed, first_chain + r)` (training set and online inputs, teacher noise,
minibatch indices, initial parameters) and, inside instruments, from streams keyed by
(instrument, chain), and its parameters sit in a row aligned as every other chain's (`engine.rows`).
So chain r follows the same trajectory and records the same numbers alone as inside a batch of
chains, and a run stacked with others (`Loop` over several setups, `engine.stack.run_many`) as alone.

A chain that diverges is frozen at its last value before the divergence and marked inactive; its
step and reason are recorded and the other chains continue. Divergence is the stated rule of
`engine.divergence`: a non-finite theta, ||theta - theta*||^2 beyond 1e12 times its start (at least
1 param^2), or, where `excess_risk` is recorded, F - F* beyond its start + log K + 100 nats. A chain
that never crosses these runs bit for bit as without the rule. At a recorded step the loop computes
the needs that the due instruments declare, once, calls them with a frozen `StepContext` and
stores what they return; it never looks at what they compute.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from synthetic import validation

from ..config import Init
from ..instruments import (INSTRUMENTS, EvalSet, Every, Instrument, StepContext, StreamBank, check_needs,
                           default_instruments)
from ..instruments.base import PerPoint
from ..instruments.context import ATTRIBUTES
from ..records import Run, versions
from ..rng import chain_streams, run_streams
from ..students.kd import cat_targets
from .build import Setup, build
from .config import RunConfig, parse_schedule
from .divergence import Divergence
from .feed import make_feed
from .resources import Limits, check, run_cost
from .rows import aligned_copy, rows_like

__all__ = ["STEP_FIELDS", "Group", "Loop", "run"]

#: the record's stationarity check uses H at theta* (`Run.relaxation`) for students up to this size
RELAXATION_MAX_PARAMS, RELAXATION_N_MC = 3000, 4096


def _instruments(config: RunConfig, instruments: Sequence[Instrument | str] | None) -> list[Instrument]:
    """The instruments of a run; a registry name (`bkd info`) observes every `eval_every` steps."""
    chosen = list(default_instruments(config.eval_every, config.steps) if instruments is None else instruments)
    chosen = [INSTRUMENTS.get(ins).obj(Every(config.eval_every)) if isinstance(ins, str) else ins for ins in chosen]
    for ins in chosen:
        if not isinstance(ins, Instrument):
            raise ValueError(f"instruments must follow the Instrument protocol (name, needs, schedule, observe), got {ins!r}")
        check_needs(frozenset(ins.needs), ins.name)
    return chosen


#: the `RunConfig` fields that define the update every chain takes; runs that agree on them (and share
#: one task and one student object) can run as one loop over their stacked chains (`Loop`, `run_many`)
STEP_FIELDS = ("task", "standardize", "student", "gauge", "features", "dtype", "device", "optimizer", "momentum",
               "beta1", "beta2", "eps", "gamma", "schedule", "steps", "batch", "kd_temperature")


class Group:
    """The chains of one run inside a `Loop`, rows lo:hi of its stacked parameters: their streams,
    evaluation set, data feed, instruments, divergence rule (rule 3 is per run) and records."""

    def __init__(self, setup: Setup, instruments: Sequence[Instrument | str] | None, lo: int) -> None:
        cfg, task, student = setup.config, setup.task, setup.student
        self.setup, self.cfg, self.lo, self.hi = setup, cfg, lo, lo + cfg.chains
        self.instruments = _instruments(cfg, instruments)
        self.chains = np.arange(cfg.first_chain, cfg.first_chain + cfg.chains)
        self.streams = [chain_streams(cfg.seed, int(c)) for c in self.chains]
        self.eval_set = EvalSet.from_task(task, cfg.eval_n, run_streams(cfg.seed).data, student.dtype).to(student.device)
        try:
            self.theta_star: torch.Tensor | None = student.optimum(task).to(student.device)
        except ValueError:
            self.theta_star = None
        if self.theta_star is None and cfg.init in (Init.OPTIMUM, Init.PERTURBED):
            raise ValueError(f"init={cfg.init.value!r} needs a realizable student; {student.spec!r} has no theta* "
                             f"on task {cfg.task!r}")
        self.theta0 = student.init_params(cfg.init, cfg.chains, task, self.streams, cfg.init_scale).to(student.device)
        self.feed = make_feed(cfg, task, setup.teacher, self.streams, student.dtype, self.chains)
        self.bank = StreamBank(cfg.seed, self.chains)
        self.rule: Divergence | None = None  # set by the loop: its rows of the stacked rule
        self.records: dict[str, tuple[list[int], list[np.ndarray]]] = {}
        self.points: dict[str, tuple[list[int], list[np.ndarray]]] = {}
        # cumulative effective step sizes at the recorded steps: sum gamma_k s_k for a scalar rate s_k
        # (heavy ball: 1 / (1 - beta)); the vector sum gamma_k P_k for a diagonal preconditioner (Adam, E21)
        self.decay: dict[int, Any] = {}
        self.gamma_sum: Any = 0.0
        self.relax = self.theta_star is not None and student.num_params <= RELAXATION_MAX_PARAMS

    @property
    def rows(self) -> slice:
        return slice(self.lo, self.hi)

    def store(self, step: int, values: dict[str, Any]) -> dict[str, np.ndarray]:
        """File one observation's {quantity: `[R]` values or `PerPoint`}; return the `[R]` values."""
        now = {}
        for quantity, v in values.items():
            if isinstance(v, PerPoint):
                steps_p, vals_p = self.points.setdefault(quantity, ([], []))
                steps_p.append(step)
                vals_p.append(v.points.detach().to("cpu", torch.float64).numpy().copy())
                v = v.values
            steps_q, vals_q = self.records.setdefault(quantity, ([], []))
            steps_q.append(step)
            vals_q.append(torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(self.cfg.chains).numpy().copy())
            now[quantity] = vals_q[-1]
        return now


def _check_stack(setups: Sequence[Setup]) -> None:
    """ValueError unless the setups can share one loop (`STEP_FIELDS`, one task and one student object)."""
    first = setups[0]
    for i, s in enumerate(setups[1:], 1):
        if s.task is not first.task or s.student is not first.student:
            raise ValueError(f"setups[{i}]: stacked runs must share one task and one student object")
        differ = [f for f in STEP_FIELDS if getattr(s.config, f) != getattr(first.config, f)]
        if differ:
            raise ValueError(f"setups[{i}]: stacked runs must agree on {', '.join(differ)} (STEP_FIELDS)")


class Loop:
    """R chains of one run, or of several runs stacked: set up from `Setup`s, then `execute()` returns
    their `Run` records.

    Stacked runs (a sequence of setups that agree on `STEP_FIELDS` and share one task and one student
    object, `instruments` then one entry per setup) take each update as one batch of all their chains;
    every operation of an update is chain-local, and each run keeps its own streams, feed, evaluation
    set, instruments and records, so each record is bit for bit that of the run alone.
    """

    def __init__(self, setup: Setup | Sequence[Setup], instruments: Any = None) -> None:
        setups = [setup] if isinstance(setup, Setup) else list(setup)
        chosen = [instruments] if isinstance(setup, Setup) else [None] * len(setups) if instruments is None \
            else list(instruments)
        if not setups or len(chosen) != len(setups):
            raise ValueError(f"instruments must give one entry per setup, got {len(chosen)} for {len(setups)}")
        for i, ins in enumerate(chosen if not isinstance(setup, Setup) else ()):  # stacked: one entry per run
            if isinstance(ins, (str, Instrument)) or not (ins is None or isinstance(ins, Sequence)):
                raise ValueError(f"instruments[{i}] must be None or a sequence of instruments or registry names, "
                                 f"got {ins!r}")
        _check_stack(setups)
        self.t0 = time.perf_counter()
        self.groups, lo = [], 0
        for s, ins in zip(setups, chosen):
            self.groups.append(Group(s, ins, lo))
            lo = self.groups[-1].hi
        first = setups[0]
        self.cfg, self.student, self.optimizer = first.config, first.student, first.optimizer
        self.device = self.student.device  # engine.build put the student on the run's device
        thetas = [g.theta0 for g in self.groups]
        self.theta = aligned_copy(thetas[0] if len(thetas) == 1 else torch.cat(thetas))  # `engine.rows`
        for g in self.groups:
            del g.theta0
        self.spare = rows_like(self.theta)
        self.factor = parse_schedule(self.cfg.schedule)
        self.optimizer.start(self.theta)
        self.active = torch.ones(lo, dtype=torch.bool, device=self.device)
        self.diverged = torch.full((lo,), -1, dtype=torch.int64)
        self.reasons = [""] * lo
        self.rule, self.stopped = Divergence.start(self.theta, self.groups[0].theta_star, first.task.num_classes), False
        for g in self.groups:
            g.rule = self.rule.rows(g.lo, g.hi)
        self._masks = self._group_masks()

    def _group_masks(self) -> list[torch.Tensor]:
        """Per run, its active chains as an `[R]` mask of the stack (the optimizer's `rate` of that run)."""
        if len(self.groups) == 1:
            return [self.active]
        masks = []
        for g in self.groups:
            m = torch.zeros_like(self.active)
            m[g.rows] = self.active[g.rows]
            masks.append(m)
        return masks

    def observe(self, step: int) -> None:
        """Call each run's instruments due at `step` and store their values `[R]` per quantity."""
        for g in self.groups:
            self._observe(g, step)

    def _observe(self, g: Group, step: int) -> None:
        due = [ins for ins in g.instruments if ins.schedule(step)]
        if not due:
            return
        s = g.setup
        ctx = StepContext(step=step, gamma=self.cfg.gamma * self.factor(max(step - 1, 0)),
                          theta=aligned_copy(self.theta[g.rows]), theta_star=g.theta_star, student=s.student, task=s.task,
                          teacher=s.teacher, batch_size=self.cfg.batch, eval_set=g.eval_set,
                          active=self.active[g.rows].clone(), streams=g.bank)
        for name in sorted(set().union(*(frozenset(ins.needs) for ins in due)) - ATTRIBUTES):
            ctx.need(name)  # each shared need once per step, in a fixed order
        g.decay[step] = g.gamma_sum.clone() if isinstance(g.gamma_sum, torch.Tensor) else g.gamma_sum
        now: dict[str, np.ndarray] = {}
        for ins in due:
            now.update(g.store(step, ins.observe(ctx)))
        blown = torch.zeros_like(self.active)
        blown[g.rows] = torch.from_numpy(g.rule.observed(now)).to(self.device)
        blown &= self.active
        if bool(blown.any()):  # rule 3: stopped from this step on, at its current theta
            self._stop(blown, step, lambda r: "excess_risk")

    def _stop(self, newly: torch.Tensor, step: int, why: Any) -> None:
        """Record `step` and the reason `why(r)` for the chains `newly` `[R]` bool, and stop them."""
        self.stopped = True
        rows = newly.cpu()
        self.diverged[rows] = step
        for r in torch.nonzero(rows).flatten().tolist():
            self.reasons[r] = why(r)
        self.active = self.active & ~newly
        self.optimizer.freeze(~self.active)
        self._masks = self._group_masks()

    def advance(self, k: int, x: torch.Tensor, t: torch.Tensor) -> None:
        """One update (step k -> k + 1) of every chain; chains that diverge (rules 1-2) stop here."""
        gamma_k = self.cfg.gamma * self.factor(k)
        new = self.optimizer.step(self.student, self.theta, x, t, gamma_k, self.spare)
        for g, mask in zip(self.groups, self._masks):
            g.gamma_sum = g.gamma_sum + gamma_k * (self.optimizer.rate(mask) if g.relax else 1.0)
        ok = self.rule.within(new)  # one norm per chain: NaN, inf and blow-ups all fail it
        if self.stopped or not bool(ok.all()):
            newly = self.active & ~ok
            if bool(newly.any()):
                self._stop(newly, k + 1, lambda r: Divergence.reason(new[r]))
            new.copy_(torch.where(self.active[:, None], new, self.theta))  # stopped chains keep their last theta
        self.theta, self.spare = new, self.theta  # double buffer: no allocation per step

    def execute(self, progress: bool = False, prefetch: bool = True) -> list[Run]:
        """Run every step, observing on the instruments' schedules; return the records, one per run."""
        cfg, k = self.cfg, 0
        s = self.groups[0].setup
        more = f" (+{len(self.groups) - 1} stacked)" if len(self.groups) > 1 else ""
        desc = f"bkd run {cfg.task}/{s.student.spec}/{s.teacher.spec}{more}"
        with tqdm(total=cfg.steps, disable=not progress, desc=desc, unit="step") as bar, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="bkd-feed") as pool:
            self.observe(0)
            # the next page is drawn in the background while this one trains; only that thread touches
            # the chain streams, in the same order as without it, so results do not depend on `prefetch`
            pending = pool.submit(self.page) if prefetch else None
            while k < cfg.steps:
                xs, ts = pending.result() if prefetch else self.page()
                todo = min(len(xs), cfg.steps - k)
                if prefetch and k + todo < cfg.steps:
                    pending = pool.submit(self.page)
                for i in range(todo):
                    self.advance(k, xs[i], ts[i])
                    k += 1
                    self.observe(k)
                bar.update(todo)
        elapsed = time.perf_counter() - self.t0
        return [self.record(g, elapsed) for g in self.groups]

    def page(self) -> tuple[torch.Tensor, Any]:
        """The feeds' next pages (drawn on the CPU; runs stacked along the chain axis), on the run's device."""
        pages = [g.feed.next_page() for g in self.groups]
        xs, ts = pages[0] if len(pages) == 1 else (torch.cat([p[0] for p in pages], dim=1),
                                                    cat_targets([p[1] for p in pages], dim=1))
        if self.device.type == "cpu":
            return xs, ts
        return xs.to(self.device), ts.to(device=self.device)

    def relaxation(self, g: Group) -> dict[str, Any] | None:
        """The eigenvalues of H at theta* (on its range; of P^1/2 H P^1/2 for a preconditioned rule,
        `_preconditioned`) and run g's cumulative step sizes, for the per-quantity stationarity check
        of its record; None when H is not available."""
        s = g.setup
        if not g.relax:
            return None
        from ..theory import constants

        method = "linear" if s.student.feature_model() is not None else "fisher"
        s.student.to_device("cpu")  # the theory works in numpy on the CPU
        try:
            H = constants.hessian_at_optimum(s.task, s.student, n_mc=RELAXATION_N_MC, seed=g.cfg.seed, method=method)
        finally:
            s.student.to_device(self.device)
        how = f"H at theta* ({method}, Monte Carlo over {RELAXATION_N_MC} inputs), on its range"
        null = constants.null_basis(s.student)
        order = 2 if s.teacher.unbiased else 1  # a biased teacher's F - F* is linear in the mean offset (stats)
        if not isinstance(g.gamma_sum, torch.Tensor):
            return {"eigenvalues": constants.curvature(H, null).eigenvalues, "decay": dict(g.decay), "method": how,
                    "order": order}
        pre = _preconditioned(H, null, g.decay, how)
        return None if pre is None else {**pre, "order": order}

    def record(self, g: Group, wall_time: float) -> Run:
        """The `Run` record of what run g has done; `wall_time` (s): the loop's, stacked runs included."""
        rows = g.rows
        return Run(config=g.cfg.to_dict(), seed=g.cfg.seed, versions=versions(),
                   wall_time=wall_time, diverged_step=self.diverged[rows].numpy().copy(),
                   diverged_reason=self.reasons[rows], divergence=g.rule.describe(),
                   theta_final=self.theta[rows].detach().to("cpu", torch.float64).numpy().copy(), chains=g.chains.copy(),
                   records={q: (np.asarray(s), np.stack(v)) for q, (s, v) in g.records.items()},
                   points={q: (np.asarray(s), np.stack(v)) for q, (s, v) in g.points.items()},
                   relaxation=self.relaxation(g))


def _preconditioned(H: np.ndarray, null: np.ndarray, decay: dict[int, Any], how: str) -> dict[str, Any] | None:
    """`Loop.relaxation` for a diagonal preconditioner P_k (E21): mode i of M = P^1/2 H P^1/2
    relaxes as exp(-2 lam_i(M) decay), with P the run's mean direction P_ref = D_K / max_i D_K,i
    (D_k = sum_{j<k} gamma_j P_j `[P]`, param^2/nat) and decay_k = min_i D_k,i / P_ref,i, which is
    exact for a constant P and conservative when P_k varies. None when D_K is not finite and positive."""
    from ..theory import constants

    last = torch.as_tensor(decay[max(decay)], dtype=torch.float64).cpu().numpy()
    if not np.all(np.isfinite(last)) or last.max() <= 0:
        return None
    ref = last / last.max()
    ev = constants.preconditioned_curvature(H, null, ref).eigenvalues
    steps = {k: float(np.min(torch.as_tensor(v, dtype=torch.float64).cpu().numpy() / ref)) for k, v in decay.items()}
    return {"eigenvalues": ev, "decay": steps,
            "method": how + "; preconditioned: eigenvalues of P^1/2 H P^1/2, P the run's mean diagonal preconditioner"}


def run(config: RunConfig | Any | None = None, student: Any | None = None, teacher: Any | None = None, *,
        instruments: Sequence[Instrument | str] | None = None, progress: bool = False, prefetch: bool = True,
        threads: int | None = 1, limits: Limits | None = Limits(), **overrides: Any) -> Run:
    """Run R independent SGD chains and record the instruments (DESIGN 2.7, 2.9).

    Call as `run(RunConfig(...))`, `run(gamma=0.05, teacher="onehot", ...)` (fields of `RunConfig`),
    or with objects `run(task, student, teacher, gamma=..., steps=...)` (DESIGN 5); `engine.build`
    resolves them.

    Args:
        config: a `RunConfig`, None (defaults + `overrides`), or a Task object.
        student: a `Student` or a spec string. teacher: a `Teacher` or a spec string; `lam < 1`
            trains on `Mixture(lam, teacher)` (the KD objective).
        instruments: what to measure (default `instruments.default_instruments`): objects, or registry
            names (`bkd info`) observing every `eval_every` steps.
        progress: show a tqdm progress bar.
        prefetch: draw the next page of inputs and targets in a background thread (same results).
            The `RunConfig` fields `feed` ("numpy" | "torch") and `device` ("cpu" | "cuda[:N]") choose
            the data feed and where the chains compute (`engine.feed`).
        threads: torch intra-op threads while the loop runs (restored afterwards); None leaves the
            setting alone. The default 1 is fastest here: per-step tensors are small.
        limits: the resource limits checked before any work (`engine.resources`: 4 GiB of estimated
            memory, 1e9 chain-steps by default); None checks nothing.
        **overrides: `RunConfig` fields.

    Returns:
        The `Run` record: config, versions, wall time, diverged steps and reasons `[R]`, final theta
        `[R, P]`, and every instrument's values per recorded step and chain. Raises ValueError for a
        bad configuration and `ResourceError` (a ValueError) when it exceeds `limits`.
    """
    setup = build(config, student, teacher, **overrides)
    check(run_cost(setup), limits)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(validation.positive_int("threads", threads))
    try:
        return Loop(setup, instruments).execute(progress, prefetch)[0]
    finally:
        torch.set_num_threads(previous)
