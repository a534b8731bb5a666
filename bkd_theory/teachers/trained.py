"""Trained teachers (DESIGN 2.2, 2.10): fixed functions p~(x) fitted on a finite labelled sample.

Kinds (each registered with `@register_kind`): a deterministic ReLU MLP trained by Adam on the
cross-entropy (E1) with one-hot labels (it may overfit, as real teachers do), the same net trained
on the Brier score ("brier"), a temperature-scaled deterministic net (T on held-out NLL), a deep
ensemble of M members (mean of probabilities), MC dropout with S passes, a last-layer Laplace
approximation (full, K-FAC or diagonal GGN; prior precision by marginal likelihood or a held-out
grid; probit or MC predictive) and mean-field VI (`teachers.vi`). The torch numerics live in
`teachers.laplace`; the measurement against the true BCP in `teachers.quality`; the fitting modes
of the paper's protocol in `teachers.fitting`; per-visit sampling (E24) in `teachers.pervisit`.

A trained teacher is a `FunctionTeacher`: deterministic and biased (tbar = p~ != p,
Cov(t | x) = 0), usable wherever a teacher is (`sgd.run`, `theory.predict`, `Mixture`).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from .. import rng as rng_mod
from ..threads import single_thread
from . import laplace
from .fitbase import (KINDS, TRAIN_ARGS, TeacherConfig, TeacherKind, TrainedTeacher, check_data, check_task,
                      make_config, register_kind, split_holdout)

__all__ = [
    "KINDS", "LaplaceTeacher", "NetworkTeacher", "TRAIN_ARGS", "TeacherConfig", "TeacherKind",
    "TemperatureScaledTeacher",
    "TrainedTeacher", "check_task", "fit_brier", "fit_deterministic", "fit_ensemble", "fit_laplace", "fit_mc_dropout",
    "fit_teacher", "fit_temperature_scaled", "fit_vi", "laplace_from_network", "register_kind",
]


class NetworkTeacher(TrainedTeacher):
    """p~(x) = mean over networks of softmax(f_j(x)): M ensemble members or S fixed dropout masks.

    MC dropout draws its S masks once, at fitting time, and shares them across inputs (a mask per
    pass is a sample of the weights), so p~ is a fixed function of x, independent of batching.
    Posterior draws (`sample_proba`, E24): a uniformly drawn member per row (ensemble), or a fresh
    dropout mask per row (MC dropout). The networks are `model` (`laplace.StackedMLP`).
    """

    def __init__(self, name: str, model: laplace.StackedMLP, num_classes: int, config: TeacherConfig,
                 train_time: float) -> None:
        super().__init__(name, num_classes, model.layers[0][0].shape[-1], config, train_time)
        self.model = model
        self.posterior_draws = model.masks is not None or model.layers[0][0].shape[0] > 1

    def _log_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.log_proba(x).numpy()

    def _sample_proba(self, x: np.ndarray, count: int, generator: torch.Generator) -> torch.Tensor:
        if not self.posterior_draws:
            return super()._sample_proba(x, count, generator)
        if self.model.masks is None:  # ensemble: member m ~ U{0..M-1} per (draw, row)
            q = torch.softmax(self.model.logits(x), dim=-1)                     # [M, N, K]
            m = torch.randint(q.shape[0], (count, q.shape[1]), generator=generator)
            return q[m, torch.arange(q.shape[1])]
        masks = [mk[0] for mk in laplace.dropout_masks(self.config.widths, (count, x.shape[0]), self.config.p_drop,
                                                       [generator])]
        with torch.no_grad():
            return torch.softmax(laplace.forward(self.model.layers, self.model._inputs(x), masks), dim=-1)


class LaplaceTeacher(TrainedTeacher):
    """Last-layer Laplace around a MAP network: probit or MC predictive (`teachers.laplace`).

    Posterior draws (E24): last-layer logits f ~ N(f_mu(x), J Sigma J^T) per row.
    """

    posterior_draws = True

    def __init__(self, net: NetworkTeacher, posterior: laplace.LastLayerPosterior, config: TeacherConfig,
                 train_time: float) -> None:
        name = f"laplace:{config.predictive}" if config.structure == "full" and config.prior == "marglik" else \
            f"laplace:{config.structure}:{config.prior}:{config.predictive}"
        super().__init__(name, net.num_classes, net.dim, config, train_time)
        self.net, self.posterior, self.weight_samples = net, posterior, None
        if config.predictive == "mc":  # fixed draws, so p~ stays a fixed function of x
            seed = int(rng_mod.stream(config.seed, "teacher.laplace_draws").integers(2**62))
            self.weight_samples = posterior.sample(config.mc_samples, torch.Generator().manual_seed(seed))

    @property
    def prior_precision(self) -> float:
        """The prior precision delta in use (tuned or given)."""
        return self.posterior.prior_precision

    def _phit(self, x: np.ndarray) -> torch.Tensor:
        return laplace.augment(self.net.model.features(x))

    def _log_proba(self, x: np.ndarray) -> np.ndarray:
        return self.posterior.log_proba(self._phit(x), self.weight_samples).numpy()

    def _sample_proba(self, x: np.ndarray, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.softmax(self.posterior.sample_logits(self._phit(x), count, generator), dim=-1)


class TemperatureScaledTeacher(TrainedTeacher):
    """p~(x) = softmax(f(x) / T) for a deterministic net f and T fitted on held-out NLL (Guo et al. 2017)."""

    def __init__(self, net: NetworkTeacher, temperature: float, config: TeacherConfig, train_time: float) -> None:
        super().__init__(f"temperature_scaled:{temperature:.3g}", net.num_classes, net.dim, config, train_time)
        self.net, self.temperature = net, float(temperature)

    def _log_proba(self, x: np.ndarray) -> np.ndarray:
        return torch.log_softmax(self.net.model.logits(x)[0] / self.temperature, dim=-1).numpy()


# ----------------------------------------------------------------------------------------------
# Fitting


def _fit(x: np.ndarray, y: np.ndarray, num_classes: int | None, cfg: TeacherConfig) -> TrainedTeacher:
    x, y, K = check_data(x, y, num_classes)
    if cfg.kind in (TeacherKind.TEMPERATURE_SCALED, TeacherKind.LAPLACE) and (
            cfg.kind is TeacherKind.TEMPERATURE_SCALED or cfg.prior == "grid"):
        x, y, x_held, y_held = split_holdout(x, y, cfg.holdout)
    with single_thread():
        t0 = time.perf_counter()
        model = laplace.fit_stacked_mlp(
            x, y, K, standardize=cfg.standardize, gens=[rng_mod.stream(cfg.seed, "teacher.fit", m) for m in
                                                        range(cfg.members)],
            passes=cfg.passes if cfg.kind is TeacherKind.MC_DROPOUT else None, widths=cfg.widths,
            epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, p_drop=cfg.p_drop,
            loss="brier" if cfg.kind is TeacherKind.BRIER else "ce")
        name = {TeacherKind.ENSEMBLE: f"ensemble:{cfg.members}", TeacherKind.MC_DROPOUT:
                f"mc_dropout:{cfg.p_drop:g}:{cfg.passes}", TeacherKind.LAPLACE: "map"}.get(cfg.kind, cfg.kind.value)
        plain = cfg.kind in (TeacherKind.LAPLACE, TeacherKind.TEMPERATURE_SCALED)
        net = NetworkTeacher(name, model, K, cfg.replace(kind="deterministic") if plain else cfg,
                             time.perf_counter() - t0)
    if cfg.kind is TeacherKind.TEMPERATURE_SCALED:
        return _temperature_scale(net, x_held, y_held, cfg)
    if cfg.kind is not TeacherKind.LAPLACE:
        return net
    held = (x_held, y_held) if cfg.prior == "grid" else None
    return laplace_from_network(net, x, y, prior_precision=cfg.prior_precision, prior_bounds=cfg.prior_bounds,
                                predictive=cfg.predictive, mc_samples=cfg.mc_samples, structure=cfg.structure,
                                prior=cfg.prior, held_out=held)


def _held_out_nll(log_q: torch.Tensor, y: np.ndarray) -> float:
    return float(-log_q.gather(1, torch.as_tensor(y)[:, None]).mean())


def _temperature_scale(net: NetworkTeacher, x: np.ndarray, y: np.ndarray, cfg: TeacherConfig) -> TrainedTeacher:
    """T = argmin over log T in [log 0.02, log 50] of the held-out mean NLL of softmax(f / T)."""
    t0 = time.perf_counter()
    with single_thread():
        f = net.model.logits(x)[0]
        res = minimize_scalar(lambda s: _held_out_nll(torch.log_softmax(f / math.exp(s), dim=-1), y),
                              bounds=(math.log(0.02), math.log(50.0)), method="bounded", options={"xatol": 1e-6})
    return TemperatureScaledTeacher(net, math.exp(res.x), cfg, net.train_time + time.perf_counter() - t0)


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
    return _fit(x, y, *make_config("deterministic", dict(
        num_classes=num_classes, widths=widths, epochs=epochs, lr=lr, weight_decay=weight_decay,
        batch_size=batch_size, seed=seed, standardize=standardize)))


@register_kind("ensemble")
def fit_ensemble(x: np.ndarray, y: np.ndarray, *, members: int = 5, **train: Any) -> NetworkTeacher:
    """Deep ensemble: `members` MLPs (own init and batch order); p~ = mean of their softmaxes.

    `train`: the training arguments of `fit_deterministic`; member 0 is that very network.
    """
    return _fit(x, y, *make_config("ensemble", train, members=members))


@register_kind("mc_dropout")
def fit_mc_dropout(x: np.ndarray, y: np.ndarray, *, p_drop: float = 0.1, passes: int = 32,
                   **train: Any) -> NetworkTeacher:
    """MC dropout: dropout `p_drop` after each hidden layer in training; p~ = mean over `passes` masks."""
    return _fit(x, y, *make_config("mc_dropout", train, p_drop=p_drop, passes=passes))


@register_kind("brier")
def fit_brier(x: np.ndarray, y: np.ndarray, **train: Any) -> NetworkTeacher:
    """One ReLU MLP trained by Adam on the Brier score (MSE of softmax(f) against e_y), not the cross-entropy."""
    return _fit(x, y, *make_config("brier", train))


@register_kind("temperature_scaled")
def fit_temperature_scaled(x: np.ndarray, y: np.ndarray, *, holdout: float = 0.2, **train: Any) -> TrainedTeacher:
    """A deterministic net on the first 1 - `holdout` of the sample, then softmax(f / T) with T
    minimising the NLL of the held-out rest (bounded scalar search over log T)."""
    return _fit(x, y, *make_config("temperature_scaled", train, holdout=holdout))


@register_kind("laplace")
def fit_laplace(x: np.ndarray, y: np.ndarray, *, prior_precision: float | None = None,
                prior_bounds: tuple[float, float] = (1e-4, 1e4), predictive: str = "probit",
                mc_samples: int = 100, structure: str = "full", prior: str = "marglik", holdout: float = 0.2,
                **train: Any) -> LaplaceTeacher:
    """Last-layer Laplace around the MAP network `fit_deterministic(x, y, **train)`.

    The Laplace arguments are those of `laplace_from_network`; with prior "grid" the MAP net and
    the posterior use the first 1 - `holdout` of the sample, the rest picks delta.
    """
    return _fit(x, y, *make_config("laplace", train, prior_precision=prior_precision, prior_bounds=tuple(prior_bounds),
                                   predictive=predictive, mc_samples=mc_samples, structure=structure, prior=prior,
                                   holdout=holdout))


def _grid_prior(post: laplace.LastLayerPosterior, phit: torch.Tensor, y: np.ndarray, grid: int = 21) -> float:
    """The delta of a log grid on the search range minimising the held-out NLL of the probit predictive."""
    lo, hi = post.bounds
    deltas = np.exp(np.linspace(math.log(lo), math.log(hi), grid))
    f_mu = phit @ post.mean.reshape(-1, phit.shape[1]).T
    nll = [_held_out_nll(laplace.probit_log_proba(f_mu, v), y) for v in post.logit_variance_path(phit, deltas)]
    return float(deltas[int(np.argmin(nll))])


def laplace_from_network(net: NetworkTeacher, x: np.ndarray, y: np.ndarray, *,
                         prior_precision: float | None = None, prior_bounds: tuple[float, float] = (1e-4, 1e4),
                         predictive: str = "probit", mc_samples: int = 100, structure: str = "full",
                         prior: str = "marglik",
                         held_out: tuple[np.ndarray, np.ndarray] | None = None) -> LaplaceTeacher:
    """Put a last-layer Laplace posterior on a trained deterministic network (no retraining).

    Args:
        net: a one-member network without dropout (`fit_deterministic`), trained on (x, y).
        x, y: that training sample, `[n, d]` and `[n]`.
        prior_precision: delta; None tunes it by `prior` on `prior_bounds`.
        predictive: "probit" (multiclass probit) or "mc" (`mc_samples` last-layer weight draws).
        structure: the GGN's "full", "kron" or "diag" structure (`laplace.ggn_eigen`).
        prior: "marglik" (marginal likelihood) or "grid" (held-out NLL on `held_out` = (x, y)).
    """
    if not isinstance(net, NetworkTeacher) or net.model.layers[0][0].shape[0] != 1 or net.model.masks is not None:
        raise ValueError(f"net must be a deterministic NetworkTeacher (one member, no dropout), got {net!r}")
    cfg = net.config.replace(kind="laplace", prior_precision=prior_precision, prior_bounds=tuple(prior_bounds),
                             predictive=predictive, mc_samples=mc_samples, structure=structure, prior=prior)
    if prior == "grid" and prior_precision is None and held_out is None:
        raise ValueError("held_out must be a labelled sample (x, y) for prior 'grid', got None")
    x, y, _ = check_data(x, y, net.num_classes)
    with single_thread():
        t0 = time.perf_counter()
        post = laplace.fit_posterior(laplace.last_layer_theta(net.model.layers), laplace.augment(net.model.features(x)),
                                     torch.as_tensor(y), prior_precision=prior_precision, bounds=cfg.prior_bounds,
                                     structure=structure)
        if prior == "grid" and prior_precision is None:
            xh, yh, _ = check_data(*held_out, net.num_classes)
            post = post.at(_grid_prior(post, laplace.augment(net.model.features(xh)), yh), tuned=True)
        return LaplaceTeacher(net, post, cfg, net.train_time + time.perf_counter() - t0)


def fit_teacher(kind: str, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> TrainedTeacher:
    """Fit a teacher of a registered `kind` (`KINDS`: deterministic, ensemble, mc_dropout, laplace,
    vi, brier, temperature_scaled).

    `kwargs` are those of that kind's `fit_*` function; anything else raises ValueError.
    """
    if not isinstance(kind, str) or kind.lower() not in KINDS:
        raise ValueError(f"kind must be one of {{{', '.join(KINDS.names())}}}, got {kind!r}")
    kind = kind.lower()
    if kind in ("deterministic", "brier"):
        make_config(kind, kwargs)  # unknown keywords: ValueError rather than TypeError
    return KINDS.get(kind).obj(x, y, **kwargs)


from .vi import fit_vi  # noqa: E402  (registers "vi" after the kinds above, for `bkd info`'s order)
