"""Trained teachers (DESIGN 2.2, 2.10): fixed functions p~(x) fitted on a finite labelled sample.

Kinds (each registered with `@register_kind`): a deterministic ReLU MLP trained by Adam on the
cross-entropy (E1) with one-hot labels (it may overfit, as real teachers do), a deep ensemble of M
members (mean of probabilities), MC dropout with S passes, and a last-layer Laplace approximation
(GGN posterior, prior precision by marginal likelihood, probit or MC predictive). The torch
numerics live in `teachers.laplace`; the measurement against the true BCP in `teachers.quality`.

A trained teacher is a `FunctionTeacher`: deterministic and biased (tbar = p~ != p,
Cov(t | x) = 0), usable wherever a teacher is (`sgd.run`, `theory.predict`, `Mixture`).
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthetic import validation
from synthetic.registry import Registry

from .. import rng as rng_mod
from ..config import Config, StrEnum
from ..threads import single_thread
from . import laplace
from .function import FunctionTeacher

__all__ = [
    "KINDS", "LaplaceTeacher", "NetworkTeacher", "TRAIN_ARGS", "TeacherConfig", "TeacherKind", "TrainedTeacher",
    "fit_deterministic", "fit_ensemble", "fit_laplace", "fit_mc_dropout", "fit_teacher", "laplace_from_network",
    "register_kind",
]

#: the trained-teacher kinds: name -> fitting function `fit(x, y, **kwargs) -> TrainedTeacher`
KINDS: Registry = Registry("trained-teacher kind")
register_kind = KINDS
TRAIN_ARGS = ("num_classes", "widths", "epochs", "lr", "weight_decay", "batch_size", "seed", "standardize")


class TeacherKind(StrEnum):
    """The trained teachers of DESIGN 2.2."""

    DETERMINISTIC = "deterministic"
    ENSEMBLE = "ensemble"
    MC_DROPOUT = "mc_dropout"
    LAPLACE = "laplace"


@dataclass(frozen=True)
class TeacherConfig(Config):
    """Everything that determines a trained teacher given its training sample.

    Attributes:
        kind: which teacher. widths: hidden widths of the ReLU MLP. epochs: passes over the data
        (fixed, no early stopping). lr, weight_decay: Adam's step size and (coupled) L2 penalty.
        batch_size: minibatch size (an epoch's last batch may be smaller). seed: training seed.
        standardize: standardise inputs by the training sample's mean and std (stored in the
        teacher, which still takes raw x). members: ensemble size M. p_drop, passes: dropout rate
        and number S of MC passes. prior_precision: Laplace delta (None = tuned by marginal
        likelihood on prior_bounds). predictive: Laplace "probit" or "mc"; mc_samples: weight draws.
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TeacherKind.coerce(self.kind, "kind"))
        if len(self.widths) < 1:
            raise ValueError("widths must hold at least one hidden width, got ()")
        object.__setattr__(self, "widths", tuple(validation.positive_int("widths", w) for w in self.widths))
        for name in ("epochs", "batch_size", "members", "passes", "mc_samples"):
            validation.positive_int(name, getattr(self, name))
        validation.positive_int("seed", self.seed, minimum=0)
        validation.positive("lr", self.lr)
        validation.nonnegative("weight_decay", self.weight_decay)
        if not 0.0 <= validation.in_interval("p_drop", self.p_drop, 0.0, 1.0) < 1.0:
            raise ValueError(f"p_drop must be in [0, 1), got {self.p_drop!r}")
        if self.prior_precision is not None:
            validation.positive("prior_precision", self.prior_precision)
        laplace.check_bounds(self.prior_bounds)
        validation.one_of("predictive", self.predictive, ("probit", "mc"))


# ----------------------------------------------------------------------------------------------
# Teachers


class TrainedTeacher(FunctionTeacher):
    """A fitted network p~(x) as a teacher: a `FunctionTeacher` (deterministic, biased).

    Attributes:
        spec: short label, e.g. "ensemble:5". num_classes: K. dim: d.
        config: the `TeacherConfig` it was fitted with.
        train_time: wall-clock fitting time in seconds.
    """

    def __init__(self, name: str, num_classes: int, dim: int, config: TeacherConfig | None = None,
                 train_time: float = float("nan")) -> None:
        super().__init__(name=name)
        self.num_classes, self.dim, self.config, self.train_time = num_classes, dim, config, train_time

    @abc.abstractmethod
    def _log_proba(self, x: np.ndarray) -> np.ndarray:
        """log p~(x) `[N, K]` for validated x."""

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """Return log p~(x) `[N, K]` float64, computed in log space (no underflow to -inf)."""
        x = validation.finite_array("x", x, shape=(None, self.dim))
        with single_thread():
            return self._log_proba(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class NetworkTeacher(TrainedTeacher):
    """p~(x) = mean over networks of softmax(f_j(x)): M ensemble members or S fixed dropout masks.

    MC dropout draws its S masks once, at fitting time, and shares them across inputs (a mask per
    pass is a sample of the weights), so p~ is a fixed function of x, independent of batching.
    The networks are `model` (`laplace.StackedMLP`).
    """

    def __init__(self, name: str, model: laplace.StackedMLP, num_classes: int, config: TeacherConfig,
                 train_time: float) -> None:
        super().__init__(name, num_classes, model.layers[0][0].shape[-1], config, train_time)
        self.model = model

    def _log_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.log_proba(x).numpy()


class LaplaceTeacher(TrainedTeacher):
    """Last-layer Laplace around a MAP network: probit or MC predictive (`bkd_theory.laplace`)."""

    def __init__(self, net: NetworkTeacher, posterior: laplace.LastLayerPosterior, config: TeacherConfig,
                 train_time: float) -> None:
        super().__init__(f"laplace:{config.predictive}", net.num_classes, net.dim, config, train_time)
        self.net, self.posterior, self.weight_samples = net, posterior, None
        if config.predictive == "mc":  # fixed draws, so p~ stays a fixed function of x
            seed = int(rng_mod.stream(config.seed, "teacher.laplace_draws").integers(2**62))
            self.weight_samples = posterior.sample(config.mc_samples, torch.Generator().manual_seed(seed))

    @property
    def prior_precision(self) -> float:
        """The prior precision delta in use (tuned or given)."""
        return self.posterior.prior_precision

    def _log_proba(self, x: np.ndarray) -> np.ndarray:
        return self.posterior.log_proba(laplace.augment(self.net.model.features(x)), self.weight_samples).numpy()


# ----------------------------------------------------------------------------------------------
# Fitting


def _check_data(x: np.ndarray, y: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
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


def _config(kind: str, train: dict[str, Any], **specific: Any) -> tuple[int | None, TeacherConfig]:
    unknown = sorted(set(train) - set(TRAIN_ARGS))
    if unknown:
        raise ValueError(f"{unknown[0]} is not a parameter of kind {kind!r}; allowed: {sorted((*TRAIN_ARGS, *specific))}")
    train = dict(train)
    num_classes = train.pop("num_classes", None)
    if "widths" in train:
        train["widths"] = tuple(np.atleast_1d(train["widths"]).tolist())
    return num_classes, TeacherConfig(kind=kind, **train, **specific)


def _fit(x: np.ndarray, y: np.ndarray, num_classes: int | None, cfg: TeacherConfig) -> TrainedTeacher:
    x, y, K = _check_data(x, y, num_classes)
    with single_thread():
        t0 = time.perf_counter()
        model = laplace.fit_stacked_mlp(
            x, y, K, standardize=cfg.standardize, gens=[rng_mod.stream(cfg.seed, "teacher.fit", m) for m in
                                                        range(cfg.members)],
            passes=cfg.passes if cfg.kind is TeacherKind.MC_DROPOUT else None, widths=cfg.widths,
            epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, p_drop=cfg.p_drop)
        name = {TeacherKind.DETERMINISTIC: "deterministic", TeacherKind.ENSEMBLE: f"ensemble:{cfg.members}",
                TeacherKind.MC_DROPOUT: f"mc_dropout:{cfg.p_drop:g}:{cfg.passes}", TeacherKind.LAPLACE: "map"}[cfg.kind]
        net_cfg = cfg.replace(kind="deterministic") if cfg.kind is TeacherKind.LAPLACE else cfg
        net = NetworkTeacher(name, model, K, net_cfg, time.perf_counter() - t0)
    if cfg.kind is not TeacherKind.LAPLACE:
        return net
    return laplace_from_network(net, x, y, prior_precision=cfg.prior_precision, prior_bounds=cfg.prior_bounds,
                                predictive=cfg.predictive, mc_samples=cfg.mc_samples)


@register_kind("deterministic")
def fit_deterministic(x: np.ndarray, y: np.ndarray, *, num_classes: int | None = None,
                      widths: tuple[int, ...] = (128, 128), epochs: int = 100, lr: float = 1e-3,
                      weight_decay: float = 0.0, batch_size: int = 64, seed: int = 0,
                      standardize: bool = True) -> NetworkTeacher:
    """Fit one ReLU MLP by Adam on the cross-entropy with labels y (fixed epochs; it may overfit).

    Args:
        x: training inputs `[n, d]`. y: labels `[n]` int in {0..K-1}.
        num_classes: K (default max(y) + 1). The rest: see `TeacherConfig`. These are the training
            arguments (`TRAIN_ARGS`) that every other `fit_*` also accepts as keywords.
    """
    return _fit(x, y, *_config("deterministic", dict(
        num_classes=num_classes, widths=widths, epochs=epochs, lr=lr, weight_decay=weight_decay,
        batch_size=batch_size, seed=seed, standardize=standardize)))


@register_kind("ensemble")
def fit_ensemble(x: np.ndarray, y: np.ndarray, *, members: int = 5, **train: Any) -> NetworkTeacher:
    """Deep ensemble: `members` MLPs (own init and batch order); p~ = mean of their softmaxes.

    `train`: the training arguments of `fit_deterministic`; member 0 is that very network.
    """
    return _fit(x, y, *_config("ensemble", train, members=members))


@register_kind("mc_dropout")
def fit_mc_dropout(x: np.ndarray, y: np.ndarray, *, p_drop: float = 0.1, passes: int = 32,
                   **train: Any) -> NetworkTeacher:
    """MC dropout: dropout `p_drop` after each hidden layer in training; p~ = mean over `passes` masks."""
    return _fit(x, y, *_config("mc_dropout", train, p_drop=p_drop, passes=passes))


@register_kind("laplace")
def fit_laplace(x: np.ndarray, y: np.ndarray, *, prior_precision: float | None = None,
                prior_bounds: tuple[float, float] = (1e-4, 1e4), predictive: str = "probit",
                mc_samples: int = 100, **train: Any) -> LaplaceTeacher:
    """Last-layer Laplace around the MAP network `fit_deterministic(x, y, **train)`.

    The Laplace arguments are those of `laplace_from_network`.
    """
    return _fit(x, y, *_config("laplace", train, prior_precision=prior_precision, prior_bounds=tuple(prior_bounds),
                                 predictive=predictive, mc_samples=mc_samples))


def laplace_from_network(net: NetworkTeacher, x: np.ndarray, y: np.ndarray, *,
                         prior_precision: float | None = None, prior_bounds: tuple[float, float] = (1e-4, 1e4),
                         predictive: str = "probit", mc_samples: int = 100) -> LaplaceTeacher:
    """Put a last-layer Laplace posterior on a trained deterministic network (no retraining).

    Args:
        net: a one-member network without dropout (`fit_deterministic`), trained on (x, y).
        x, y: that training sample, `[n, d]` and `[n]`.
        prior_precision: delta; None tunes it by the Laplace marginal likelihood on `prior_bounds`.
        predictive: "probit" (multiclass probit) or "mc" (`mc_samples` last-layer weight draws).
    """
    if not isinstance(net, NetworkTeacher) or net.model.layers[0][0].shape[0] != 1 or net.model.masks is not None:
        raise ValueError(f"net must be a deterministic NetworkTeacher (one member, no dropout), got {net!r}")
    cfg = net.config.replace(kind="laplace", prior_precision=prior_precision, prior_bounds=tuple(prior_bounds),
                             predictive=predictive, mc_samples=mc_samples)
    x, y, _ = _check_data(x, y, net.num_classes)
    with single_thread():
        t0 = time.perf_counter()
        post = laplace.fit_posterior(laplace.last_layer_theta(net.model.layers), laplace.augment(net.model.features(x)),
                                     torch.as_tensor(y), prior_precision=prior_precision, bounds=cfg.prior_bounds)
        return LaplaceTeacher(net, post, cfg, net.train_time + time.perf_counter() - t0)


def fit_teacher(kind: str, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> TrainedTeacher:
    """Fit a teacher of `kind` ("deterministic", "ensemble", "mc_dropout", "laplace").

    `kwargs` are those of that kind's `fit_*` function; anything else raises ValueError.
    """
    kind = TeacherKind.coerce(kind, "kind")
    if kind is TeacherKind.DETERMINISTIC:
        _config(kind.value, kwargs)  # unknown keywords: ValueError rather than TypeError
    return KINDS.get(kind.value).obj(x, y, **kwargs)
