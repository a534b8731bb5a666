"""What every trained teacher shares (DESIGN 2.2, 2.10): the kind registry, the configuration, the
`TrainedTeacher` base class and the checks of a labelled sample.

A trained teacher is a `FunctionTeacher` p~(x) (deterministic and biased). A Bayesian one
(`posterior_draws` True: ensemble, MC dropout, Laplace, VI) can also draw p~_w(x) for posterior
samples w, independently per row (`sample_proba`), which `pervisit.PerVisit` turns into targets
sampled fresh at every visit (E24).
"""
from __future__ import annotations

import abc
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthetic import validation
from synthetic.registry import Registry

from ..config import Config, StrEnum
from ..threads import single_thread
from . import laplace
from .function import FunctionTeacher

__all__ = ["KINDS", "TRAIN_ARGS", "TeacherConfig", "TeacherKind", "TrainedTeacher", "check_task", "register_kind"]

#: the trained-teacher kinds: name -> fitting function `fit(x, y, **kwargs) -> TrainedTeacher`
KINDS: Registry = Registry("trained-teacher kind")
register_kind = KINDS
TRAIN_ARGS = ("num_classes", "widths", "epochs", "lr", "weight_decay", "batch_size", "seed", "standardize")
#: distinct inputs whose log p~(x) a trained teacher keeps (figures ask for the same nodes many times)
MEMO_INPUTS = 8


class TeacherKind(StrEnum):
    """The trained teachers of DESIGN 2.2 and 2.10."""

    DETERMINISTIC = "deterministic"
    ENSEMBLE = "ensemble"
    MC_DROPOUT = "mc_dropout"
    LAPLACE = "laplace"
    VI = "vi"
    BRIER = "brier"
    TEMPERATURE_SCALED = "temperature_scaled"


@dataclass(frozen=True)
class TeacherConfig(Config):
    """Everything that determines a trained teacher given its training sample.

    Attributes:
        kind: which teacher. widths: hidden widths of the ReLU MLP. epochs: passes over the data
        (fixed, no early stopping). lr, weight_decay: Adam's step size and (coupled) L2 penalty.
        batch_size: minibatch size (an epoch's last batch may be smaller). seed: training seed.
        standardize: standardise inputs by the training sample's mean and std (stored in the
        teacher, which still takes raw x). members: ensemble size M. p_drop, passes: dropout rate
        and number S of MC passes. prior_precision: Laplace delta (None = tuned by `prior`).
        prior_bounds: delta's search range. predictive: Laplace "probit" or "mc"; mc_samples:
        weight draws (Laplace "mc", VI). structure: Laplace GGN "full", "kron" or "diag".
        prior: Laplace delta by "marglik" (marginal likelihood) or "grid" (held-out NLL on a
        log grid of prior_bounds). holdout: share of the sample held out (the LAST points) for
        the temperature of "temperature_scaled" and Laplace's "grid" prior. prior_sigma: VI prior
        N(0, prior_sigma^2). ml_epochs, anneal_epochs: VI's KL weight is 0 for ml_epochs, then
        rises linearly to 1 over anneal_epochs. init_sigma: VI's initial posterior std.
    """

    kind: TeacherKind = TeacherKind.DETERMINISTIC
    widths: tuple[int, ...] = (128, 128)
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    seed: int = 0
    standardize: bool = True
    members: int = 1
    p_drop: float = 0.0
    passes: int = 1
    prior_precision: float | None = None
    prior_bounds: tuple[float, float] = (1e-4, 1e4)
    predictive: str = "probit"
    mc_samples: int = 100
    structure: str = "full"
    prior: str = "marglik"
    holdout: float = 0.2
    prior_sigma: float = 1.0
    ml_epochs: int = 0
    anneal_epochs: int = 0
    init_sigma: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TeacherKind.coerce(self.kind, "kind"))
        if len(self.widths) < 1:
            raise ValueError("widths must hold at least one hidden width, got ()")
        object.__setattr__(self, "widths", tuple(validation.positive_int("widths", w) for w in self.widths))
        for name in ("epochs", "batch_size", "members", "passes", "mc_samples"):
            validation.positive_int(name, getattr(self, name))
        for name in ("seed", "ml_epochs", "anneal_epochs"):
            validation.positive_int(name, getattr(self, name), minimum=0)
        validation.positive("lr", self.lr)
        validation.nonnegative("weight_decay", self.weight_decay)
        if not 0.0 <= validation.in_interval("p_drop", self.p_drop, 0.0, 1.0) < 1.0:
            raise ValueError(f"p_drop must be in [0, 1), got {self.p_drop!r}")
        if self.prior_precision is not None:
            validation.positive("prior_precision", self.prior_precision)
        laplace.check_bounds(self.prior_bounds)
        validation.one_of("predictive", self.predictive, ("probit", "mc"))
        validation.one_of("structure", self.structure, laplace.STRUCTURES)
        validation.one_of("prior", self.prior, ("marglik", "grid"))
        if not 0.0 < validation.in_interval("holdout", self.holdout, 0.0, 1.0) < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout!r}")
        validation.positive("prior_sigma", self.prior_sigma)
        validation.positive("init_sigma", self.init_sigma)


class TrainedTeacher(FunctionTeacher):
    """A fitted network p~(x) as a teacher: a `FunctionTeacher` (deterministic, biased).

    Attributes:
        spec: short label, e.g. "ensemble:5". num_classes: K. dim: d.
        config: the `TeacherConfig` it was fitted with.
        train_time: wall-clock fitting time in seconds.
        posterior_draws: `sample_proba` draws p~_w(x) for posterior samples w (E24).

    A fitted teacher is a fixed function: `log_proba` keeps its answers for the last `MEMO_INPUTS`
    inputs, keyed on the input's bytes, and returns copies (the numbers of computing again, bit for
    bit).
    """

    posterior_draws = False

    def __init__(self, name: str, num_classes: int, dim: int, config: TeacherConfig | None = None,
                 train_time: float = float("nan")) -> None:
        super().__init__(name=name)
        self.num_classes, self.dim, self.config, self.train_time = num_classes, dim, config, train_time
        self._memo: OrderedDict = OrderedDict()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_memo": OrderedDict()}  # a pickled teacher travels without its memo

    @abc.abstractmethod
    def _log_proba(self, x: np.ndarray) -> np.ndarray:
        """log p~(x) `[N, K]` for validated x."""

    def _sample_proba(self, x: np.ndarray, count: int, generator: torch.Generator) -> torch.Tensor:
        raise ValueError(f"teacher {self.spec!r} has no posterior to sample (posterior_draws is False); "
                         "use ensemble, mc_dropout, laplace or vi")

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """Return log p~(x) `[N, K]` float64, computed in log space (no underflow to -inf)."""
        x = validation.finite_array("x", x, shape=(None, self.dim))
        key = (x.shape, hashlib.blake2b(np.ascontiguousarray(x).data, digest_size=16).digest())
        hit = self._memo.get(key)  # one lookup: safe beside a feed thread asking at the same time
        if hit is None:
            with single_thread():
                hit = np.asarray(self._log_proba(x))
            self._memo[key] = hit
            while len(self._memo) > MEMO_INPUTS:  # the oldest input goes first
                self._memo.popitem(last=False)
        return hit.copy()

    def sample_proba(self, x: np.ndarray, count: int, generator: torch.Generator) -> np.ndarray:
        """Return p~_w(x) `[count, N, K]` for `count` posterior draws w per row, independent across
        rows and draws (E24), from `generator` only."""
        x = validation.finite_array("x", x, shape=(None, self.dim))
        count = validation.positive_int("count", count)
        with single_thread():
            return self._sample_proba(x, count, generator).numpy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def check_task(teacher: Any, task: Any) -> Any:
    """Return `teacher` after checking that its K and d are the task's (ValueError naming them)."""
    for name, mine, theirs in (("num_classes", "num_classes", "num_classes"), ("dim", "dim", "dim")):
        a, b = getattr(teacher, mine, None), getattr(task, theirs)
        if a is not None and int(a) != int(b):
            raise ValueError(f"teacher {name} must equal the task's {name} = {b}, got {a} ({teacher!r})")
    return teacher


def check_data(x: np.ndarray, y: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated (x `[n, d]`, y `[n]` int64, K) of a labelled sample (ValueError naming x, y or num_classes)."""
    x = validation.finite_array("x", x, ndim=2)
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 samples, got shape {x.shape}")
    y_arr = np.asarray(y)
    if y_arr.shape != (x.shape[0],) or not np.issubdtype(y_arr.dtype, np.integer):
        raise ValueError(f"y must be an integer array of shape ({x.shape[0]},), got {y_arr.dtype} {y_arr.shape}")
    K = int(y_arr.max()) + 1 if num_classes is None else validation.positive_int("num_classes", num_classes, minimum=2)
    if K < 2 or y_arr.min() < 0 or y_arr.max() >= K:
        raise ValueError(f"y must take values in {{0..K-1}} with K={K} >= 2, got range [{y_arr.min()}, {y_arr.max()}]")
    return x, y_arr.astype(np.int64), K


def make_config(kind: str, train: dict[str, Any], **specific: Any) -> tuple[int | None, TeacherConfig]:
    """(num_classes, `TeacherConfig`) from training keywords (`TRAIN_ARGS`) and a kind's own ones."""
    unknown = sorted(set(train) - set(TRAIN_ARGS))
    if unknown:
        raise ValueError(f"{unknown[0]} is not a parameter of kind {kind!r}; allowed: {sorted((*TRAIN_ARGS, *specific))}")
    train = dict(train)
    num_classes = train.pop("num_classes", None)
    if "widths" in train:
        train["widths"] = tuple(np.atleast_1d(train["widths"]).tolist())
    return num_classes, TeacherConfig(kind=kind, **train, **specific)


def split_holdout(x: np.ndarray, y: np.ndarray, share: float) -> tuple[np.ndarray, ...]:
    """(x_fit, y_fit, x_held, y_held): the last ceil(share n) points held out (ValueError if either part is empty)."""
    n = x.shape[0]
    m = int(np.ceil(share * n))
    if not 1 <= m <= n - 2:
        raise ValueError(f"holdout = {share} leaves {n - m} fitting and {m} held-out points of n = {n}; "
                         "need >= 2 and >= 1")
    return x[:n - m], y[:n - m], x[n - m:], y[n - m:]
