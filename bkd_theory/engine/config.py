"""`RunConfig`, everything that defines one run, and the step-size schedules (STYLE 8).

Every field carries its help text in `metadata["help"]`: the CLI flags of `bkd run` and
`bkd predict` are generated from these fields (`bkd_theory.cli`), so names, types, defaults and
help are written once, here. The config holds names and specs (plain data); `engine.build` turns
them into objects. Validation here covers ranges and consistency of the fields; names are checked
where they are resolved (`build`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np
import torch

from synthetic import validation
from synthetic.registry import Registry

from ..config import Config, DataFeed, Features, Gauge, Init, NoiseMode, Regime, Sampling
from ..students.base import as_dtype, dtype_name

#: step-size schedules: name -> factory of c(k) from the spec's parameters (strings)
SCHEDULES: Registry = Registry("schedule")


@SCHEDULES("constant")
def _constant() -> Callable[[int], float]:
    """constant: gamma_k = gamma."""
    return lambda k: 1.0


@SCHEDULES("inverse", params=("k0",))
def _inverse(k0: str) -> Callable[[int], float]:
    """inverse:K0: gamma_k = gamma / (1 + k / K0)."""
    k0_ = validation.positive("schedule k0", float(k0))
    return lambda k: 1.0 / (1.0 + k / k0_)


@SCHEDULES("step", params=("every", "factor"))
def _step(every: str, factor: str) -> Callable[[int], float]:
    """step:EVERY:FACTOR: gamma_k = gamma FACTOR^(k // EVERY)."""
    every_ = validation.positive_int("schedule every", float(every))
    factor_ = validation.in_interval("schedule factor", float(factor), 0.0, 1.0, closed=True)
    return lambda k: factor_ ** (k // every_)


def parse_schedule(spec: str) -> Callable[[int], float]:
    """Return the step-size factor c(k) of a schedule spec, gamma_k = gamma c(k) (`SCHEDULES`)."""
    choices = ", ".join(":".join([e.name, *(p.upper() for p in e.params)]) for e in SCHEDULES)
    head, *args = str(spec).strip().lower().split(":")
    if head not in SCHEDULES or len(args) != len(SCHEDULES.get(head).params):
        raise ValueError(f"schedule must be one of {choices}, got {spec!r}")
    try:
        return SCHEDULES.get(head).obj(*args)
    except ValueError as err:
        if "schedule" in str(err):
            raise
        raise ValueError(f"schedule must be one of {choices}, got {spec!r}") from None


def _temperature(value: Any) -> float:
    """The KD temperature as a float in (0, inf); ValueError naming `kd_temperature` and its range."""
    try:
        v = float(value) if not isinstance(value, (bool, np.bool_)) else math.nan
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"kd_temperature must be a finite number in (0, inf), or None for no temperature; got {value!r}")
    return v


def device_name(value: Any) -> str:
    """The canonical device string ("cpu", "cuda", "cuda:1"); ValueError naming `device` otherwise.
    Whether the device exists is checked when a run is built (`check_device`)."""
    try:
        dev = torch.device(str(value).strip().lower()) if isinstance(value, (str, torch.device)) else None
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index not in (None, 0)):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    return str(dev) if dev.type == "cuda" else "cpu"


def check_device(name: str) -> torch.device:
    """The torch device of a run; ValueError naming `device` when it is not present on this machine."""
    dev = torch.device(name)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={name!r}: no CUDA device here (torch {torch.__version__}, "
                             f"torch.cuda.is_available() is False); use device='cpu'")
        if (dev.index or 0) >= count:
            raise ValueError(f"device={name!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    return dev


def _f(default: Any, help: str, **meta: Any) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, **meta})


@dataclasses.dataclass(frozen=True)
class RunConfig(Config):
    """Everything that defines one run; stored in full with its result (STYLE 8).

    `task`, `student` and `teacher` are names or specs (DESIGN 5), or `package.module:Name` for a
    user's own. `n` is the training-set size of the finite regime (None online). `noise` is the
    teacher noise mode of a finite set (fresh or frozen).
    """

    task: str = _f("triangle", "task: a registered preset (bkd info) or package.module:Name")
    standardize: bool = _f(False, "standardise x (DESIGN 2.6; the BCPs are unchanged)")
    student: str = _f("linear", "student: linear | mlp | mlp:64x64 | mlp:64x64:tanh | package.module:Name")
    gauge: Gauge = _f(Gauge.PINNED, "linear student's gauge")
    features: Features = _f(Features.LINEAR, "linear student's features")
    teacher: str = _f("bcp", "teacher spec: onehot | bcp | dirichlet:A | additive:NU | mixture:LAM:T | ... (DESIGN 5)")
    gamma: float = _f(0.1, "step size gamma > 0; a chain diverges (stopped, its step recorded) when theta is "
                      "non-finite, ||theta - theta*||^2 > 1e12 max(start, 1) or F - F* > start + log K + 100 nats")
    schedule: str = _f("constant", "step-size schedule: constant | inverse:K0 | step:EVERY:FACTOR")
    batch: int = _f(1, "minibatch size b >= 1")
    momentum: float = _f(0.0, "heavy-ball momentum beta in [0, 1) (optimizer sgd)")
    optimizer: str = _f("sgd", "update rule: sgd | adam (bkd info lists the registered ones)")
    beta1: float = _f(0.9, "Adam's first-moment decay beta1 in [0, 1)")
    beta2: float = _f(0.999, "Adam's second-moment decay beta2 in [0, 1)")
    eps: float = _f(1e-8, "Adam's eps > 0")
    lam: float = _f(1.0, "KD mixture weight lam in [0, 1]: t = (1 - lam) e_y + lam t_teacher")
    kd_temperature: float | None = _f(None, "student-side KD temperature T > 0 (E22): train on the Hinton loss "
                                      "(1 - lam) CE(e_y, q) + lam T^2 CE(t^(T), softmax(f/T)), t^(T) = softmax(log t / T); "
                                      "a mixture:LAM:BASE teacher multiplies lam by LAM; None: plain CE")
    regime: Regime = _f(Regime.ONLINE, "online (fresh points every step) or finite (a training set of n points)")
    n: int | None = _f(None, "training-set size n (regime finite)")
    sampling: Sampling = _f(Sampling.REPLACEMENT, "minibatches of a finite set: with replacement or epoch shuffling")
    noise: NoiseMode = _f(NoiseMode.FRESH, "teacher noise mode of a finite set: fresh or frozen")
    init: Init = _f(Init.PERTURBED, "initial parameters")
    init_scale: float = _f(0.5, "perturbation / random-init scale >= 0")
    steps: int = _f(1000, "SGD steps >= 1")
    chains: int = _f(64, "independent chains R >= 1")
    first_chain: int = _f(0, "index of the first chain (to split a run across processes)")
    seed: int = _f(0, "seed >= 0")
    eval_every: int = _f(100, "instrument period in steps >= 1")
    eval_n: int = _f(2000, "evaluation-sample size >= 1")
    dtype: str = _f("float64", "parameter dtype", choices=("float32", "float64"))
    feed: DataFeed = _f(DataFeed.NUMPY, "online data feed: numpy (the reference streams) or torch (per-chain torch "
                        "generators in the run's dtype: faster, other random numbers)", hash_omit_default=True)
    device: str = _f("cpu", "torch device of the parameters and instruments: cpu or cuda[:N] (pages are drawn on "
                     "the CPU and copied, so a seed gives the same data on every device)", hash_omit_default=True)

    def __post_init__(self) -> None:
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        for name, enum in (("gauge", Gauge), ("features", Features), ("regime", Regime), ("sampling", Sampling),
                           ("noise", NoiseMode), ("init", Init), ("feed", DataFeed)):
            put(name, enum.coerce(getattr(self, name), name))
        put("device", device_name(self.device))
        for name in ("task", "student", "teacher", "schedule", "dtype"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        put("gamma", validation.positive("gamma", self.gamma))
        put("momentum", validation.in_interval("momentum", self.momentum, 0.0, 1.0, upper_open=True))
        self._check_optimizer(put)
        put("lam", validation.in_interval("lam", self.lam, 0.0, 1.0))
        if self.kd_temperature is not None:
            put("kd_temperature", _temperature(self.kd_temperature))
        put("init_scale", validation.nonnegative("init_scale", self.init_scale))
        for name in ("batch", "steps", "chains", "eval_every", "eval_n"):
            put(name, validation.positive_int(name, getattr(self, name)))
        for name in ("first_chain", "seed"):
            put(name, validation.positive_int(name, getattr(self, name), minimum=0))
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise ValueError(f"standardize must be True or False, got {self.standardize!r}")
        put("standardize", bool(self.standardize))
        put("dtype", dtype_name(as_dtype(self.dtype)))
        parse_schedule(self.schedule)
        self._check_regime(put)

    def _check_optimizer(self, put: Callable[[str, Any], None]) -> None:
        from .optim import OPTIMIZERS

        if not isinstance(self.optimizer, str) or self.optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS.names())}, got {self.optimizer!r}")
        put("optimizer", self.optimizer.lower())
        for name in ("beta1", "beta2"):
            put(name, validation.in_interval(name, getattr(self, name), 0.0, 1.0, upper_open=True))
        put("eps", validation.positive("eps", self.eps))
        if self.optimizer != "sgd" and self.momentum:
            raise ValueError(f"momentum is heavy-ball SGD's; with optimizer={self.optimizer!r} use beta1 (got momentum="
                             f"{self.momentum!r})")

    def _check_regime(self, put: Callable[[str, Any], None]) -> None:
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
