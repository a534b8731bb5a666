"""The shared recipes of the claims, each written once (DESIGN 2.9): the objects and theory of a
configuration, the instrumented run, the stationary neighborhood, the bound curve, finite-n
training and the convergence threshold.

A configuration is plain data: `RunConfig` fields (task, student, gauge, teacher, gamma, ...) plus
the recipe's own keys. Runs and predictions are memoised on the configuration (`memo`), so claims
that read the same run (E17 and E17', T-bounds and their curves) share it, and a figure that shows
a claim's curve reads the very numbers the claim was judged on.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .. import rng as rng_mod
from ..stats import Z, crossing, mean_se
from ..verdicts import Outcome

#: a bound whose contraction (1 - its relative decay over the run) stays above 1 - VACUOUS_DECAY is vacuous
VACUOUS_DECAY = 0.01
#: "converges" (DESIGN 2.9): the tail slope of log(F - F*) is negative beyond Z SE, or F - F* fell to this share of F0
CONVERGED_FRACTION = 1e-8
#: configurations each recipe remembers (a figure's curve reads its points' runs back)
MEMO_SIZE = 64
#: F - F* below ROUNDING x F0 is float64 rounding of the KL (~1e-17 F0 on triangle): left out of slopes
ROUNDING = 1e-13
#: the linear regime of ||theta - theta*||^2 for growth rates: far above float64 rounding (~3e-30 on
#: triangle), below where one large-||x|| step (a factor ~100 in ||theta - theta*||) saturates the softmax
LINEAR_REGIME = (1e-20, 1e-8)


# ------------------------------------------------------------------ configurations and the memo
def key(cfg: Mapping[str, Any]) -> str:
    """A canonical string for a configuration (sorted JSON; tuples as lists)."""
    return json.dumps(cfg, sort_keys=True, default=str)


def memo(fn: Callable[[Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], Any]:
    """Memoise a recipe on its configuration (the MEMO_SIZE most recently used); the wrapper has
    `cache_clear()` and `cached(cfg)` (whether cfg's value is kept)."""
    kept: OrderedDict[str, Any] = OrderedDict()

    def wrapper(cfg: Mapping[str, Any]) -> Any:
        k = key(cfg)
        if k in kept:
            kept.move_to_end(k)
            return kept[k]
        value = fn(json.loads(k))
        kept[k] = value
        while len(kept) > MEMO_SIZE:
            kept.popitem(last=False)
        return value

    wrapper.cache_clear = kept.clear  # type: ignore[attr-defined]
    wrapper.cached = lambda cfg: key(cfg) in kept  # type: ignore[attr-defined]
    wrapper.__doc__, wrapper.__name__ = fn.__doc__, fn.__name__
    return wrapper


def run_fields(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The `RunConfig` fields of a configuration."""
    from ..engine import RunConfig

    names = {f.name for f in dataclasses.fields(RunConfig)}
    return {k: v for k, v in cfg.items() if k in names}


@lru_cache(maxsize=16)
def _objects(task: str, student: str, gauge: str, features: str, teacher: str, standardize: bool) -> Any:
    from ..engine import build

    return build(task=task, student=student, gauge=gauge, features=features, teacher=teacher, dtype="float64",
                 standardize=standardize)


def objects(cfg: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(task, student, teacher) of a configuration, in float64."""
    s = _objects(str(cfg["task"]), str(cfg.get("student", "linear")), str(cfg.get("gauge", "pinned")),
                 str(cfg.get("features", "linear")), str(cfg["teacher"]), bool(cfg.get("standardize", False)))
    return s.task, s.student, s.base_teacher


def task_student(cfg: Mapping[str, Any]) -> tuple[Any, Any]:
    """(task, student) of a configuration, in float64, whatever its teacher (a "trained:<kind>" spec
    included: the pair does not depend on it)."""
    task, student, _ = objects({**cfg, "teacher": "bcp"})
    return task, student


THEORY_KEYS = ("task", "student", "gauge", "features", "standardize", "teacher", "gamma", "batch", "momentum", "n", "seed",
               "optimizer", "beta1", "beta2", "eps", "lam")


def theory(cfg: Mapping[str, Any]) -> Any:
    """`theory.predict` for the configuration (gamma, batch, momentum, n, seed, the optimizer and the
    KD weight lam as given; the other
    keys, which enter no prediction, are not part of the memo's key)."""
    return _theory({k: cfg[k] for k in THEORY_KEYS if k in cfg})


@memo
def _theory(cfg: Mapping[str, Any]) -> Any:
    from ..theory import predict

    task, student, teacher = objects(cfg)
    opt = {k: cfg[k] for k in ("optimizer", "beta1", "beta2", "eps", "lam") if k in cfg}
    return predict(task, student, teacher, gamma=float(cfg.get("gamma", 1.0)), batch=int(cfg.get("batch", 1)),
                   momentum=float(cfg.get("momentum", 0.0)), n=cfg.get("n"), seed=int(cfg["seed"]), **opt)


def mu(cfg: Mapping[str, Any]) -> float:
    """lambda_min(H) at theta* on its range (the slowest mode of linearised SGD; H is the Fisher at
    theta*, so a trained teacher reads that of the exact BCPs)."""
    return float(theory({**cfg, "teacher": "bcp"} if trained_kind(cfg["teacher"]) else cfg).H_eig_min.value)


def slowest_rate(cfg: Mapping[str, Any]) -> float:
    """The slowest mode's relaxation rate per unit gamma near theta* (nat/param^2): mu / (1 - beta)
    for SGD with heavy-ball momentum beta; for Adam lambda_min(P^1/2 H P^1/2) with Adam's
    P = diag(1 / (sqrt(C_ii / b) + eps)) at theta* (E21)."""
    if str(cfg.get("optimizer", "sgd")).lower() != "adam":
        return mu(cfg) / (1.0 - float(cfg.get("momentum", 0.0)))
    from ..theory.constants import null_basis, preconditioned_curvature
    from ..theory.distillation import adam_preconditioner

    pred = theory(cfg)
    p = adam_preconditioner(pred.C, int(cfg.get("batch", 1)), float(cfg.get("eps", 1e-8)))
    return preconditioned_curvature(pred.H, null_basis(objects(cfg)[1]), p).mu


def _unbiased(cfg: Mapping[str, Any]) -> bool:
    """The configuration's KD targets are unbiased (tbar = p): not for a trained teacher."""
    return trained_kind(cfg["teacher"]) is None and bool(objects(cfg)[2].unbiased)


def auto_steps(cfg: Mapping[str, Any]) -> int:
    """The steps of a stationary run: `cfg["steps"]`, or when it is "auto", enough that the slowest
    mode has relaxed by e^-burn when the averaging window (the last half) starts: exp(-2 gamma rate
    k) for unbiased targets (F - F* quadratic in the offset), exp(-gamma rate k) for a biased teacher
    (linear in the mean offset, `stats.unrelaxed_fraction`): max(min_steps, 2 burn / (order gamma
    rate)), rate = `slowest_rate` (mu for SGD), rounded up to a multiple of eval_every."""
    steps = cfg.get("steps", "auto")
    if steps != "auto":
        return int(steps)
    rate = float(cfg["gamma"]) * slowest_rate(cfg) * (2 if _unbiased(cfg) else 1)
    k = max(int(cfg.get("min_steps", 1000)), math.ceil(2 * cfg.get("burn", 2.5) / rate))
    every = int(cfg.get("eval_every", 100))
    return every * math.ceil(k / every)


#: the keys that determine a "trained:<kind>" teacher of a configuration (`fitted`)
FIT_KEYS = ("task", "standardize", "teacher_n", "teacher_epochs", "members", "passes", "p_drop", "teacher_seed")
#: trained-teacher kinds a configuration can name as "trained:<kind>"
TRAINED = ("deterministic", "ensemble", "mc_dropout", "laplace")
TEACHER_SAMPLE = 91  # the "claims" stream index of a trained teacher's labelled sample


def trained_kind(spec: Any) -> str | None:
    """<kind> of a "trained:<kind>" teacher spec, else None."""
    return spec.split(":", 1)[1] if isinstance(spec, str) and spec.startswith("trained:") else None


#: optional keys of a trained teacher (DESIGN 2.10); all absent = the out-of-sample fit of `fitted`.
#: fit_mode: "in-sample", "cross-fitted" or "out-of-sample"; folds: k of cross-fitting (default 5);
#: teacher_widths: its hidden widths (default 2 x 128); teacher_kwargs: more arguments of its kind's
#: fit function (e.g. {"structure": "kron"}, {"prior_sigma": 0.5}); teacher_draws: S posterior draws
#: per visit (E24, `teachers.pervisit.PerVisit`; absent = the fixed predictive p~(x)); moment_draws:
#: the posterior draws of its theory moments pbar(x), Cov_w (default 512)
FIT_OPTIONS = ("fit_mode", "folds", "teacher_widths", "teacher_kwargs", "teacher_draws", "moment_draws")
#: the run keys an in-sample or cross-fitted teacher reads: the chains' training sets
FIT_SAMPLE_KEYS = ("regime", "n", "seed", "chains", "first_chain")


def fit_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of `cfg` that determine its trained teachers (`FIT_KEYS`, the `FIT_OPTIONS` given
    and, in-sample or cross-fitted, `FIT_SAMPLE_KEYS` with the run's defaults)."""
    from ..engine import RunConfig

    missing = [k for k in FIT_KEYS if k not in cfg]
    if missing:
        raise ValueError(f"a trained teacher needs the configuration keys {missing}")
    out = {k: cfg[k] for k in (*FIT_KEYS, *FIT_OPTIONS) if k in cfg}
    if cfg.get("fit_mode", "out-of-sample") != "out-of-sample":
        default = {f.name: f.default for f in dataclasses.fields(RunConfig)}
        out.update({k: str(v) if k == "regime" else v for k in FIT_SAMPLE_KEYS for v in [cfg.get(k, default[k])]})
    return out


def fitted(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The trained teachers (`TRAINED`: 2 x 128 ReLU MLPs by Adam, `teacher_epochs` epochs on
    `teacher_n` labelled points of their own sample; an ensemble of `members` (member 0 = the
    deterministic net), MC dropout `p_drop` with `passes` masks, last-layer Laplace on the
    deterministic net, probit predictive), memoised on `fit_config`; with `FIT_OPTIONS`, those of
    `trained_teacher`."""
    fc = fit_config(cfg)
    if any(k in fc for k in FIT_OPTIONS):
        return {k: trained_teacher(cfg, k) for k in TRAINED}
    return _fitted(fc)


def trained_teacher(cfg: Mapping[str, Any], kind: str) -> Any:
    """The teacher of "trained:<kind>" (any registered kind, `teachers.trained.KINDS`): `fitted(cfg)[kind]`
    without `FIT_OPTIONS`; else fitted in `fit_mode` (`teachers.fitting`; in-sample and cross-fitted
    per chain, on the chains' own training sets), sampled per visit with `teacher_draws`."""
    fc = fit_config(cfg)
    if kind in TRAINED and not any(k in fc for k in FIT_OPTIONS):
        return _fitted(fc)[kind]
    return _trained_teacher({**fc, "kind": kind})


@memo
def _trained_teacher(cfg: Mapping[str, Any]) -> Any:
    import synthetic
    from synthetic import validation

    from ..teachers import fitting, fitbase, pervisit

    task = synthetic.make_task(cfg["task"], standardize=bool(cfg["standardize"]))
    extra = cfg.get("teacher_kwargs", {})
    if not isinstance(extra, dict):
        raise ValueError(f"teacher_kwargs must be a dict of fitting arguments, got {extra!r}")
    kw = {"num_classes": task.num_classes, "epochs": int(cfg["teacher_epochs"]), "seed": int(cfg["teacher_seed"]),
          **({"widths": tuple(cfg["teacher_widths"])} if "teacher_widths" in cfg else {}),
          **{"ensemble": {"members": int(cfg["members"])}, "mc_dropout": {"p_drop": float(cfg["p_drop"]),
             "passes": int(cfg["passes"])}}.get(cfg["kind"], {}), **extra}
    mode = fitting.FitMode.coerce(cfg.get("fit_mode", "out-of-sample"), "fit_mode").value
    if mode == "out-of-sample":
        own = task.sample(int(cfg["teacher_n"]), rng_mod.stream(int(cfg["teacher_seed"]), "claims", TEACHER_SAMPLE))
        teacher = fitting.fit_teacher(cfg["kind"], *own, **kw)
    else:
        if cfg["regime"] != "finite" or cfg["n"] is None:
            raise ValueError(f"fit_mode {mode!r} needs regime 'finite' with a training-set size n, got "
                             f"regime {cfg['regime']!r}, n = {cfg['n']!r}")
        first = int(cfg["first_chain"])
        sets = [task.sample(int(cfg["n"]), rng_mod.chain_streams(int(cfg["seed"]), r).data)
                for r in range(first, first + int(cfg["chains"]))]
        teacher = fitting.fit_chains(cfg["kind"], mode, sets, folds=int(cfg.get("folds", 5)), **kw)
    fitbase.check_task(teacher, task)
    if cfg.get("teacher_draws") is None:
        return teacher
    if not teacher.posterior_draws:
        raise ValueError(f"teacher_draws needs a teacher with posterior draws (ensemble, mc_dropout, laplace, vi), "
                         f"got kind {cfg['kind']!r}")
    return pervisit.PerVisit(teacher, validation.positive_int("teacher_draws", cfg["teacher_draws"]),
                             moment_draws=int(cfg.get("moment_draws", 512)), seed=int(cfg["teacher_seed"]))


@memo
def _fitted(cfg: Mapping[str, Any]) -> dict[str, Any]:
    import synthetic

    from ..teachers import trained

    task = synthetic.make_task(cfg["task"], standardize=bool(cfg["standardize"]))
    x, y = task.sample(int(cfg["teacher_n"]), rng_mod.stream(int(cfg["teacher_seed"]), "claims", TEACHER_SAMPLE))
    train = dict(num_classes=task.num_classes, epochs=int(cfg["teacher_epochs"]), seed=int(cfg["teacher_seed"]))
    det = trained.fit_deterministic(x, y, **train)
    return {"deterministic": det, "ensemble": trained.fit_ensemble(x, y, members=int(cfg["members"]), **train),
            "mc_dropout": trained.fit_mc_dropout(x, y, p_drop=float(cfg["p_drop"]), passes=int(cfg["passes"]), **train),
            "laplace": trained.laplace_from_network(det, x, y)}


#: the device of the runs made through `run` when a configuration names none (`on_device`)
_DEVICE: ContextVar[str] = ContextVar("device", default="cpu")


@contextmanager
def on_device(device: str) -> Iterator[str]:
    """Inside the block, every run made by `run` of a configuration without a "device" key runs
    on `device` ("cpu", "cuda", "cuda:N"; ValueError naming `device` if it is not valid or not on
    this machine); yields the canonical name. Teacher fitting and the theory stay on the CPU."""
    from ..engine.config import check_device, device_name

    name = device_name(device)
    check_device(name)
    token = _DEVICE.set(name)
    try:
        yield name
    finally:
        _DEVICE.reset(token)


def run_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keys that define a configuration's run: the complete `RunConfig` (defaults filled in,
    `steps` resolved by `auto_steps`, dtype float64 and the `on_device` device unless given), the
    instruments and, for a trained teacher, its fit keys; so claims that read the same run share it
    through the memo, whatever other keys their kinds add."""
    from ..engine import RunConfig

    fields = {"dtype": "float64", "device": _DEVICE.get(), **run_fields(cfg), "steps": auto_steps(cfg)}
    out = {**RunConfig.from_dict(fields).to_dict(), "instruments": list(cfg.get("instruments", ("excess_risk", "dist2")))}
    if trained_kind(cfg["teacher"]) is not None:
        out.update(fit_config(cfg))
    return out


def run(cfg: Mapping[str, Any]) -> Any:
    """The `records.Run` of a configuration: the instrumented loop with the instruments
    `cfg["instruments"]` (registry names; default excess_risk and dist2) observing every
    `eval_every` steps, memoised on `run_config(cfg)`."""
    return _run(run_config(cfg))


#: records made by `runs` and not yet taken into `_run`'s memo, by `key` of their run configuration
_STACKED: dict[str, Any] = {}


def prefetch(cfgs: Sequence[Mapping[str, Any]]) -> None:
    """Make the runs of the configurations not yet memoised together, by `engine.run_many` (stacked
    where they take the same update: the same records, in less time), for `run` to return; at most
    MEMO_SIZE. A configuration that is refused (a ValueError: a bad field) is left out, and if
    `run_many` refuses the others (a bad teacher, a resource limit) nothing is made here: each run
    raises its own error when `run` asks for it."""
    from ..engine import run_many

    todo = {}
    for cfg in cfgs:
        try:
            rc = run_config(cfg)
        except ValueError:  # raised again, in its place, when `run` asks for this one
            continue
        if not _memoised(rc):
            todo[key(rc)] = rc
    if len(todo) > MEMO_SIZE:
        raise ValueError(f"prefetch: {len(todo)} configurations is more than the memo keeps ({MEMO_SIZE})")
    try:
        args = [_loop_args(rc) for rc in todo.values()]
        made = run_many([fields for fields, _ in args], instruments=[ins for _, ins in args])
    except ValueError:
        return
    _STACKED.update(zip(todo, made))


def runs(cfgs: Sequence[Mapping[str, Any]]) -> list[Any]:
    """`run` of each configuration, those not yet memoised made together (`prefetch`)."""
    prefetch(cfgs)
    return [run(c) for c in cfgs]


def _memoised(rc: Mapping[str, Any]) -> bool:
    return key(rc) in _STACKED or _run.cached(rc)


def _loop_args(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """(`engine.run` keywords with the teacher object of a trained teacher, instruments) of a run config."""
    from ..instruments import INSTRUMENTS, Every

    fields = run_fields(cfg)
    kind = trained_kind(fields["teacher"])
    if kind is not None:
        fields["teacher"] = trained_teacher(cfg, kind)
    when = Every(int(fields["eval_every"]), last=int(fields["steps"]))
    return fields, [INSTRUMENTS.get(n).obj(when) for n in cfg["instruments"]]


@memo
def _run(cfg: Mapping[str, Any]) -> Any:
    from ..engine import run as run_loop

    made = _STACKED.pop(key(cfg), None)
    if made is not None:
        return made
    fields, instruments = _loop_args(cfg)
    return run_loop(instruments=instruments, **fields)


# ------------------------------------------------------------------ stationary values
def stationary(cfg: Mapping[str, Any], quantity: str) -> Outcome:
    """The stationary value of `quantity` with its complete SE (chains and evaluation sample, DESIGN
    2.9) and per-quantity stationarity (drift by batch means and relaxation of the slow modes)."""
    r = run(cfg)
    e = r.summary()["quantities"][quantity]
    info = {"se_chains": e["se_chains"], "se_eval": e["se_eval"], "eval_error": e["eval_error"], "drift": e["drift"],
            "drift_se": e["drift_se"], "steps": int(r.config["steps"]), "window": e["window"],
            "diverged_chains": r.diverged_chains, "stationary_reason": e["stationary_reason"]}
    return Outcome(float(e["value"]), float(e["se"]), stationary=e["stationary"], reason=e["stationary_reason"], info=info)


def stationaries(cfgs: Sequence[Mapping[str, Any]], quantity: str) -> list[Outcome]:
    """`stationary` of each configuration, their runs made together first (`runs`: stacked where
    they share an update, the same records)."""
    runs(cfgs)
    return [stationary(c, quantity) for c in cfgs]


def prediction(cfg: Mapping[str, Any], quantity: str, **info: Any) -> Outcome:
    """One quantity of `theory(cfg)` as an Outcome (value, SE, method); ValueError when absent."""
    pred = theory(cfg)
    e = pred.values.get(quantity)
    if e is None:
        raise ValueError(f"{quantity} is not predicted for this configuration: {'; '.join(pred.notes)}")
    return Outcome(float(e.value), float(e.se), info={"method": e.method, "integration": pred.integration, **info})


# ------------------------------------------------------------------ F - F* of given parameters
EVAL_MC = 2**16  # fresh inputs for F - F* where the task has no exact quadrature points


@lru_cache(maxsize=4)
def _quadrature(task: str, standardize: bool) -> Any:
    """The task's quadrature integrator (`theory.integrate.quadrature`), built once per task."""
    from ..theory.integrate import quadrature

    return quadrature(task_student({"task": task, "standardize": standardize})[0])


def expected_kl(cfg: Mapping[str, Any], theta: torch.Tensor) -> tuple[np.ndarray, float, str]:
    """F(theta_r) - F* = E_x KL(p || q_theta_r) for parameters `[R, P]`: (values `[R]`, the SE of
    their mean from the evaluation inputs, how). Exact on the task's quadrature points where they
    are points (DESIGN 2.9 (a)); else EVAL_MC fresh inputs shared by the rows, with their added
    variance term (2.9 (c)): the SD over the inputs of the row-averaged KL, over sqrt(EVAL_MC)."""
    from ..losses import kl_divergence

    task, student = task_student(cfg)
    quad = _quadrature(str(cfg["task"]), bool(cfg.get("standardize", False)))
    if quad is not None and quad.nodes.exact:
        x, p, w, how = quad.nodes.x, quad.nodes.p, quad.nodes.w, "exact E_x (quadrature points)"
    else:
        x, _ = task.sample(EVAL_MC, rng_mod.stream(int(cfg["seed"]), "claims", 1))
        p, w, how = task.bcp(x), np.full(EVAL_MC, 1.0 / EVAL_MC), f"added variance term over {EVAL_MC} shared fresh inputs"
    xt, log_p = torch.from_numpy(x), torch.from_numpy(np.log(np.maximum(p, 1e-300)))
    kl = torch.stack([kl_divergence(log_p, student.log_probs(theta[r:r + 1], xt[None]))[0] for r in range(len(theta))])
    kl = kl.numpy()
    se = 0.0 if how.startswith("exact") else mean_se(kl.mean(0))[1]
    return kl @ w, se, how


# ------------------------------------------------------------------ bound curves (T1-T4)
def recorded_steps(cfg: Mapping[str, Any]) -> np.ndarray:
    """The steps `Every(eval_every, last=steps)` records `[T]`."""
    steps, every = auto_steps(cfg), int(cfg["eval_every"])
    return np.unique(np.r_[np.arange(0, steps + 1, every), steps])


@memo
def initial_gap(cfg: Mapping[str, Any]) -> tuple[float, float, float]:
    """(d0, e0, SE of e0): the means over the run's own initial points of ||theta_0 - theta*||^2 and
    F(theta_0) - F* (`expected_kl`; the theorems bound E[. | theta_0]). Chain r's theta_0 is rebuilt
    from `rng.chain_streams(seed, r)`, the loop's layout."""
    task, student, _ = objects(cfg)
    R = int(cfg["chains"])
    theta0 = student.init_params(cfg["init"], R, task, [rng_mod.chain_streams(cfg["seed"], r) for r in range(R)],
                                 float(cfg["init_scale"]))
    kl, se, _ = expected_kl(cfg, theta0)
    d0 = float(((theta0 - student.optimum(task)) ** 2).sum(-1).mean())
    return d0, max(float(kl.mean()), 0.0), se  # KL >= 0: a negative mean is rounding (theta_0 = theta*)


def bound_constants(cfg: Mapping[str, Any]) -> Any:
    """`bounds.Constants` of a configuration: mu and L local over the ball of `cfg["radius"]` around
    theta* (DESIGN 2.6), calL (E12) and sigma^2 (E4) from `theory`; plus the `LocalConstants`."""
    from ..theory.bounds import Constants
    from ..theory.constants import local_constants

    task, student, _ = objects(cfg)
    pred = theory(cfg)
    loc = local_constants(task, student, radius=float(cfg["radius"]), seed=int(cfg["seed"]))
    return Constants(mu=loc.mu, calL=pred.calL.value, L=loc.L, sigma2=pred.sigma2.value), loc


def bound_curve(cfg: Mapping[str, Any]) -> Outcome:
    """The bound curve of `cfg["theorem"]` (T1-T4) at the recorded steps, from the run's initial
    gap, with the local mu and L over the ball of `cfg["radius"]` (DESIGN 2.6) and calL (E12);
    vacuous when its transient term dominates it at the end yet has decayed by less than
    VACUOUS_DECAY over the run (the bound then only says "no larger than at the start")."""
    from ..theory.bounds import theorem

    th = theorem(cfg["theorem"])
    c, loc = bound_constants(cfg)
    d0, e0, e0_se = initial_gap(cfg)
    k = recorded_steps(cfg)
    b = th.curve(float(cfg["gamma"]), c, d0 if th.quantity == "dist2" else e0, k)
    se = b.rate ** k.astype(float) * (e0_se if th.quantity == "excess_risk" else 0.0)
    start = d0 if th.quantity == "dist2" else e0
    vacuous = 1.0 - b.contraction < VACUOUS_DECAY and b.contraction * start > b.neighborhood
    info = {"mu_local": loc.mu, "L_local": loc.L, "kappa_local": loc.kappa, "calL": c.calL, "gamma_max": b.gamma_max,
            "bound_neighborhood": b.neighborhood, "contraction": b.contraction, "region": loc.region}
    reason = f"(1 - gamma mu)^k = {b.contraction:.6f} at the last k: the bound decays by < {VACUOUS_DECAY:.0%}" if vacuous else ""
    return Outcome(float(b.values[-1]), float(se[-1]), k=k, curve=b.values, curve_se=se, vacuous=vacuous, reason=reason,
                   info=info)


def chain_curve(r: Any, quantity: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean over chains, SE, SE across chains alone) of `quantity` of run `r` at every
    recorded step; SE combines the chains' spread with the evaluation-sample error at that step
    (DESIGN 2.9: the added variance term over the shared evaluation points)."""
    k, v = r.values(quantity)
    m, se_chains, _ = mean_se(v, axis=1)
    se = se_chains
    if quantity in r.points:
        se = np.hypot(se_chains, mean_se(r.points[quantity][1], axis=1)[1])
    return np.asarray(k), m, se, se_chains


def measured_curve(cfg: Mapping[str, Any], quantity: str) -> Outcome:
    """Mean over chains of `quantity` at every recorded step, with the SE across chains combined
    with the evaluation-sample error at that step (DESIGN 2.9)."""
    r = run(cfg)
    k, m, se, _ = chain_curve(r, quantity)
    max_dist = float(np.sqrt(np.nanmax(r.values("dist2")[1]))) if "dist2" in r.records else math.nan
    info = {"max_distance_visited": max_dist, "diverged_chains": r.diverged_chains}
    if "radius" in cfg and max_dist > cfg["radius"]:
        info["note"] = "the run left the ball on which mu and L were estimated"
    return Outcome(float(m[-1]), float(se[-1]), k=np.asarray(k), curve=m, curve_se=se, info=info)


# ------------------------------------------------------------------ finite-n training (E18)
def _training_sets(cfg: Mapping[str, Any], teacher: Any, task: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Replica r's n inputs and frozen targets from `rng.chain_streams(seed, r)` (the engine's layout)."""
    from ..teachers import TargetSource

    xs, ts = [], []
    n = int(cfg["n"])
    for r in range(int(cfg["chains"])):
        s = rng_mod.chain_streams(cfg["seed"], r)
        x, y = task.sample(n, s.data)
        xs.append(x)
        ts.append(TargetSource(teacher, task.bcp(x), y, "frozen", s.teacher, x=x)(np.arange(n), s.teacher))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ts))


TRAINING_KEYS = ("task", "student", "gauge", "features", "standardize", "teacher", "n", "chains", "seed",
                 "newton_steps", "grad_tol")


def training_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keys the finite-n minimisers read: `TRAINING_KEYS`; for a "trained:<kind>" teacher also its
    fit keys (`fit_config`) and the KD weight lam."""
    out = {k: cfg[k] for k in TRAINING_KEYS if k in cfg}
    if trained_kind(cfg["teacher"]) is not None:
        out.update(fit_config(cfg), lam=float(cfg.get("lam", 1.0)))
    return out


def training_teacher(cfg: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(task, student, teacher) of the finite-n minimisers: a "trained:<kind>" teacher is fitted
    (`trained_teacher`) and mixed with labels at weight lam (E20); other specs as `objects`."""
    from ..teachers import with_lam

    kind = trained_kind(cfg["teacher"])
    if kind is None:
        return objects(cfg)
    return (*task_student(cfg), with_lam(trained_teacher(cfg, kind), float(cfg.get("lam", 1.0))))


def minimisers(cfg: Mapping[str, Any]) -> torch.Tensor:
    """The empirical minimisers theta_n `[R, P]` of the `chains` replicas' training sets (n points,
    frozen targets each), trained to max gradient norm <= grad_tol (memoised on the keys it reads)."""
    return _minimisers(training_config(cfg))[0]


@memo
def _minimisers(cfg: Mapping[str, Any]) -> tuple[torch.Tensor, float]:
    """(theta_n `[R, P]`, the largest final gradient norm). Per replica, Newton steps from theta*
    with the pseudo-inverse of its own empirical Hessian (the gauge's null directions excluded),
    halving a step that does not lower the training risk; ValueError when a replica has not
    converged after `newton_steps`."""
    from ..losses import cross_entropy

    task, student, teacher = training_teacher(cfg)
    X, T = _training_sets(cfg, teacher, task)
    steps, tol = int(cfg.get("newton_steps", 30)), float(cfg.get("grad_tol", 1e-7))
    risk = lambda th, r: float(cross_entropy(T[r][None], student.log_probs(th[None], X[r][None])).mean())  # noqa: E731
    theta = student.optimum(task).expand(X.shape[0], -1).clone()
    for r in range(len(theta)):
        for _ in range(steps):
            g = student.batch_grad(theta[r][None], X[r][None], T[r][None])[0]
            if float(g.norm()) <= tol:
                break
            step, f0, t = torch.linalg.pinv(student.hessian(theta[r], X[r], T[r]), hermitian=True) @ g, risk(theta[r], r), 1.0
            while t > 1e-4 and risk(theta[r] - t * step, r) > f0:
                t /= 2
            theta[r] = theta[r] - t * step
    grad = float(student.batch_grad(theta, X, T).norm(dim=-1).max())
    if not grad <= tol:
        raise ValueError(f"training did not converge: max gradient norm {grad:.3g} after {steps} Newton steps")
    return theta, grad


@memo
def finite_n(cfg: Mapping[str, Any]) -> Outcome:
    """Excess risk F(theta_n) - F* of the empirical minimisers (`minimisers`) over independent
    replicas (`chains`), with the SE across replicas combined with the evaluation error (`expected_kl`)."""
    theta, grad = _minimisers(training_config(cfg))
    kl, se_e, how = expected_kl(cfg, theta)
    value, se_r, R = mean_se(kl)
    info = {"replicas": R, "se_replicas": se_r, "se_eval": se_e, "eval_error": how, "max_grad_norm": grad}
    return Outcome(value, math.hypot(se_r, se_e), info=info)


# ------------------------------------------------------------------ growth rates and convergence thresholds
def tail_slopes(k: np.ndarray, values: np.ndarray, *, floor: float = 1e-24, ceiling: float = math.inf) -> np.ndarray:
    """Per chain, the least-squares slope of log(values) on k over the last half of the records
    where every value is within (floor, ceiling) `[R]` (per step; NaN when fewer than 3 records)."""
    k = np.asarray(k, dtype=np.float64)
    half = k >= k[-1] / 2
    out = np.full(values.shape[1], np.nan)
    for c in range(values.shape[1]):
        v = values[:, c]
        ok = half & np.isfinite(v) & (v > floor) & (v < ceiling)
        if ok.sum() >= 3:
            out[c] = np.polyfit(k[ok], np.log(v[ok]), 1)[0]
    return out


def points(cfg: Mapping[str, Any], drop: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The run configurations of a curve: gamma = gammas[i] with seed seeds[i] (independent points,
    DESIGN 2.9), the curve's own keys `drop` removed, each sized by `convergence_steps`."""
    base = {k: v for k, v in cfg.items() if k not in ("gammas", "seeds", *drop)}
    return [convergence_steps({**base, "gamma": float(g), "seed": int(s)}) for g, s in zip(cfg["gammas"], cfg["seeds"])]


def convergence_steps(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A convergence run's length when `cfg["steps"]` is "converge": twice what linearised SGD's
    slowest mode needs to bring F - F* to CONVERGED_FRACTION of F0 (exp(-2 gamma mu k); twice, as a
    start far from theta* is slower), at least `min_steps`, with `records` observations."""
    if cfg.get("steps") != "converge":
        return dict(cfg)
    m = mu({**cfg, "gamma": 1.0})
    k = max(int(cfg["min_steps"]), math.ceil(2.0 * math.log(1.0 / CONVERGED_FRACTION) / (2.0 * cfg["gamma"] * m)))
    every = max(1, math.ceil(k / int(cfg["records"])))
    return {**cfg, "steps": every * math.ceil(k / every), "eval_every": every}


def converges(cfg: Mapping[str, Any]) -> Outcome:
    """Does SGD converge to F* (DESIGN 2.9 "Criteria")?

    value: mean over chains of log10((F_end - F*) / F0_r), clipped below at log10 ROUNDING, SE across
    chains. `info["converges"]`: no chain diverged, and every chain fell to CONVERGED_FRACTION of its
    own F0, or the chains that have not are on course: their mean tail slope of log(F - F*) per step
    is negative beyond Z SE and brings their median level to the fraction within `steps` more steps
    (a slow drift on a plateau far above F* is not convergence). Values at the float64 rounding floor
    of the KL (below ROUNDING F0) are left out of the slopes. `info["tail_slope"]`: over all chains.
    """
    r = run(cfg)
    k, v = r.values("excess_risk")
    ratio = v / v[0]
    reached = ratio[-1] <= CONVERGED_FRACTION
    above = np.where(ratio > ROUNDING, v, np.nan)
    rest = above[:, ~reached]
    slope, se, n = mean_se(tail_slopes(k, rest, floor=0.0)) if rest.shape[1] else (math.nan, math.nan, 0)
    level = float(np.median(ratio[-1, ~reached])) if n else math.nan
    needed = math.log(level / CONVERGED_FRACTION) / -slope if n and slope < 0 else math.inf
    on_course = math.isfinite(se) and slope < -Z * se and needed <= k[-1]
    ok = r.diverged_chains == 0 and (bool(reached.all()) or on_course)
    lr, lr_se, _ = mean_se(np.log10(np.maximum(ratio[-1], ROUNDING)))
    every, every_se, _ = mean_se(tail_slopes(k, above, floor=0.0))
    info = {"converges": ok, "reached_fraction": int(reached.sum()), "chains": int(len(reached)),
            "tail_slope": every, "tail_slope_se": every_se, "slope_not_reached": slope, "steps_to_fraction": needed,
            "median_final_over_initial": float(np.median(ratio[-1])), "diverged_chains": r.diverged_chains,
            "F0": float(np.mean(v[0]))}
    return Outcome(lr, lr_se, info=info)


def tail_slope(cfg: Mapping[str, Any]) -> Outcome:
    """The mean tail slope of log(F - F*) per step over the chains (`converges`), SE across chains."""
    o = converges(cfg)
    return Outcome(o.info["tail_slope"], o.info["tail_slope_se"], info=o.info)


def convergence_bracket(cfg: Mapping[str, Any]) -> Outcome:
    """The largest gamma of the ascending grid `gammas` (each its own seed) up to which every point
    converges (`converges`), SE 0 (a grid value); the bracket's upper end is the next grid point."""
    gs = [float(g) for g in cfg["gammas"]]
    if gs != sorted(gs):
        raise ValueError(f"gammas must be ascending, got {gs}")
    ok = [converges(c).info["converges"] for c in points(cfg)]
    if not ok[0]:
        raise ValueError(f"gammas: SGD does not converge at the smallest gamma {gs[0]:g}")
    i = ok.index(False) - 1 if False in ok else len(ok) - 1
    hi = gs[i + 1] if i + 1 < len(gs) else math.inf
    later = [g for g, c in zip(gs[i + 1:], ok[i + 1:]) if c]
    return Outcome(gs[i], 0.0, info={"bracket": [gs[i], hi], "converges": ok, "convergent_above_bracket": later})


def wald_rate(k: np.ndarray, d2: np.ndarray) -> tuple[float, float, float]:
    """The growth rate per step of ||theta_k - theta*|| in LINEAR_REGIME, from chains stopped when
    they leave it: (rate, SE, mean steps in the regime).

    Chain r contributes S_r = log(d_tau / d_0) and tau_r, its first recorded step outside the regime
    (or the last step). log d_k is a random walk with drift lambda (the top Lyapunov exponent, E19)
    and heavy-tailed steps, and tau_r is a stopping time, so Wald's identity E[S] = lambda E[tau]
    makes sum_r S_r / sum_r tau_r consistent; a per-chain slope over the records that stay in the
    regime is not (the chains that jump out are dropped: biased towards 0). SE by the delta method.
    """
    lo, hi = LINEAR_REGIME
    log_d = 0.5 * np.log(d2)
    S, T = [], []
    for c in range(d2.shape[1]):
        out = np.nonzero(~((d2[:, c] > lo) & (d2[:, c] < hi)))[0]
        j = out[0] if len(out) else len(k) - 1
        S.append(log_d[j, c] - log_d[0, c])
        T.append(k[j] - k[0])
    S, T = np.array(S), np.array(T, dtype=float)
    rate = float(S.sum() / T.sum())
    se = float(math.sqrt(np.sum((S - rate * T) ** 2) / (len(S) * (len(S) - 1))) / T.mean())
    return rate, se, float(T.mean())


def growth_rate(cfg: Mapping[str, Any]) -> tuple[float, float, float]:
    """`wald_rate` of SGD started near theta* (`init_scale` inside LINEAR_REGIME)."""
    k, d2 = run({**cfg, "instruments": ("dist2",)}).values("dist2")
    d0 = float(np.median(d2[0]))
    if not LINEAR_REGIME[0] < d0 < LINEAR_REGIME[1]:
        raise ValueError(f"init_scale: ||theta_0 - theta*||^2 ~ {d0:.2g} is outside the linear regime {LINEAR_REGIME}")
    return wald_rate(np.asarray(k, dtype=float), d2)


def growth_threshold(cfg: Mapping[str, Any]) -> Outcome:
    """The gamma where the measured growth rate rises through 0 (E19), interpolated between the
    bracketing grid points with the delta-method SE of `stats.crossing` (independent seeds)."""
    rates = [growth_rate(c) for c in points(cfg, drop=("lyapunov_steps",))]
    m, se = [r[0] for r in rates], [r[1] for r in rates]
    g, g_se = crossing(cfg["gammas"], m, se, 0.0)
    if not math.isfinite(g):
        raise ValueError(f"gammas: the growth rate does not rise through 0 on {list(cfg['gammas'])} "
                         f"(rates {np.round(m, 4).tolist()})")
    info = {"growth_rates": m, "growth_rates_se": se, "mean_steps_in_regime": [r[2] for r in rates],
            "linear_regime": list(LINEAR_REGIME), "estimator": "Wald: sum log(d_tau/d_0) / sum tau over chains"}
    return Outcome(g, g_se, info=info)
