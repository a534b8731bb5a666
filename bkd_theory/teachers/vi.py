"""Mean-field variational inference (Bayes by backprop, Blundell et al. 2015) for a ReLU MLP teacher.

Every weight and bias w has q(w) = N(mu, sigma^2), sigma = softplus(rho), prior N(0, sigma_p^2).
Training minimises, per minibatch B of the n points,

    mean_{i in B} CE(e_{y_i}, softmax f_w(x_i)) + beta(epoch) KL(q || prior) / n,
    KL = sum_w [log(sigma_p / sigma) + (sigma^2 + mu^2) / (2 sigma_p^2) - 1/2]      (closed form)

with the KL weight beta = 0 for the first `ml_epochs` (maximum likelihood), then rising linearly
to 1 over `anneal_epochs` (KL annealing). The likelihood term uses the local reparameterisation
trick (Kingma et al. 2015): a layer's pre-activations a = W h + b are drawn per example from their
exact Gaussian law given h, mean mu_W h + mu_b and variance sigma_W^2 h^2 + sigma_b^2. For one
example this is exactly a draw of that layer's weights, so per-row posterior draws (E24) use it too.
The predictive p~(x) = (1/S) sum_s softmax(f_{w_s}(x)) uses S weight draws made once at fitting
time and shared across inputs: a fixed function of x.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import rng as rng_mod
from ..threads import single_thread
from . import laplace
from .fitbase import TeacherConfig, TrainedTeacher, check_data, make_config, register_kind

__all__ = ["GaussianLayer", "VITeacher", "fit_vi", "kl_to_prior", "kl_weight", "lrt_moments"]

_F64 = torch.float64
#: index of the fixed predictive draws under the "teacher.posterior_draws" stream
_DRAWS_INDEX = 1


@dataclass(frozen=True)
class GaussianLayer:
    """q over one layer: W ~ N(mu_W, sigma_W^2) `[out, in]`, b ~ N(mu_b, sigma_b^2) `[out]`, independent."""

    mu_w: torch.Tensor
    sigma_w: torch.Tensor
    mu_b: torch.Tensor
    sigma_b: torch.Tensor


def kl_to_prior(layers: list[GaussianLayer], prior_sigma: float) -> torch.Tensor:
    """KL(q || N(0, prior_sigma^2 I)) summed over every weight and bias (nats), closed form."""
    total = torch.zeros((), dtype=layers[0].mu_w.dtype)
    for layer in layers:
        for mu, sigma in ((layer.mu_w, layer.sigma_w), (layer.mu_b, layer.sigma_b)):
            total = total + (math.log(prior_sigma) - torch.log(sigma)
                             + (sigma**2 + mu**2) / (2 * prior_sigma**2) - 0.5).sum()
    return total


def kl_weight(epoch: int, ml_epochs: int, anneal_epochs: int) -> float:
    """beta of `epoch` (0-based): 0 for the first ml_epochs, then linear up to 1 over anneal_epochs."""
    if epoch < ml_epochs:
        return 0.0
    return 1.0 if anneal_epochs == 0 else min(1.0, (epoch - ml_epochs + 1) / anneal_epochs)


def lrt_moments(h: torch.Tensor, layer: GaussianLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance `[..., out]` of the pre-activations W h + b for inputs h `[..., in]` under q."""
    mean = h @ layer.mu_w.T + layer.mu_b
    var = (h**2) @ (layer.sigma_w**2).T + layer.sigma_b**2
    return mean, var


def lrt_forward(layers: list[GaussianLayer], h: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Logits `[..., K]` with pre-activations drawn per row (local reparameterisation)."""
    for i, layer in enumerate(layers):
        mean, var = lrt_moments(h, layer)
        h = mean + var.sqrt() * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        if i < len(layers) - 1:
            h = torch.relu(h)
    return h


class VITeacher(TrainedTeacher):
    """Mean-field VI teacher: p~(x) = mean of softmaxes over `mc_samples` fixed weight draws.

    Attributes:
        layers: the fitted `GaussianLayer`s. shift, scale: the input standardisation `[d]`.
        draws: the fixed weight draws as stacked layers [(W `[S, out, in]`, b `[S, out]`)].
    """

    posterior_draws = True

    def __init__(self, layers: list[GaussianLayer], shift: np.ndarray, scale: np.ndarray, num_classes: int,
                 config: TeacherConfig, train_time: float) -> None:
        super().__init__(f"vi:{config.prior_sigma:g}", num_classes, layers[0].mu_w.shape[1], config, train_time)
        self.layers, self.shift, self.scale = layers, shift, scale
        seed = int(rng_mod.stream(config.seed, "teacher.posterior_draws", _DRAWS_INDEX).integers(2**62))
        g, S = torch.Generator().manual_seed(seed), config.mc_samples
        self.draws = [(l.mu_w + l.sigma_w * torch.randn(S, *l.mu_w.shape, generator=g, dtype=_F64),
                       l.mu_b + l.sigma_b * torch.randn(S, *l.mu_b.shape, generator=g, dtype=_F64)) for l in layers]

    def _standardized(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((x - self.shift) / self.scale, dtype=_F64)

    def _log_proba(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            log_q = torch.log_softmax(laplace.forward(self.draws, self._standardized(x).unsqueeze(0)), dim=-1)
        return (torch.logsumexp(log_q, dim=0) - math.log(log_q.shape[0])).numpy()

    def _sample_proba(self, x: np.ndarray, count: int, generator: torch.Generator) -> torch.Tensor:
        h = self._standardized(x).unsqueeze(0).expand(count, -1, -1)
        with torch.no_grad():
            return torch.softmax(lrt_forward(self.layers, h, generator), dim=-1)


def _init(sizes: tuple[int, ...], init_sigma: float, g: torch.Generator) -> list[torch.Tensor]:
    """[mu_W, rho_W, mu_b, rho_b] per layer: mu as torch.nn.Linear's U(+-1/sqrt(fan_in)), softplus(rho) = init_sigma."""
    rho = math.log(math.expm1(init_sigma))
    out = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        out += [(2 * torch.rand(fan_out, fan_in, generator=g, dtype=_F64) - 1) * bound,
                torch.full((fan_out, fan_in), rho, dtype=_F64),
                (2 * torch.rand(fan_out, generator=g, dtype=_F64) - 1) * bound, torch.full((fan_out,), rho, dtype=_F64)]
    return [t.requires_grad_() for t in out]


def _layers(params: list[torch.Tensor]) -> list[GaussianLayer]:
    sp = torch.nn.functional.softplus
    return [GaussianLayer(params[i], sp(params[i + 1]), params[i + 2], sp(params[i + 3]))
            for i in range(0, len(params), 4)]


def train_vi(x: torch.Tensor, y: torch.Tensor, K: int, cfg: TeacherConfig, gen: np.random.Generator,
             tgen: torch.Generator) -> list[GaussianLayer]:
    """Bayes by backprop with Adam (module docstring); batch order from `gen`, init and noise from `tgen`."""
    n, d = x.shape
    params = _init((d, *cfg.widths, K), cfg.init_sigma, tgen)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    B = min(cfg.batch_size, n)
    for epoch in range(cfg.epochs):
        beta = kl_weight(epoch, cfg.ml_epochs, cfg.anneal_epochs)
        perm = torch.as_tensor(gen.permutation(n))
        for start in range(0, n, B):
            idx = perm[start:start + B]
            layers = _layers(params)
            log_q = torch.log_softmax(lrt_forward(layers, x[idx], tgen), dim=-1)
            loss = -log_q.gather(1, y[idx, None]).mean()
            if beta > 0:
                loss = loss + beta * kl_to_prior(layers, cfg.prior_sigma) / n
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return [GaussianLayer(*(t.detach() for t in (l.mu_w, l.sigma_w, l.mu_b, l.sigma_b))) for l in _layers(params)]


@register_kind("vi")
def fit_vi(x: np.ndarray, y: np.ndarray, *, prior_sigma: float = 1.0, ml_epochs: int | None = None,
           anneal_epochs: int | None = None, mc_samples: int = 32, init_sigma: float = 0.05,
           **train: Any) -> VITeacher:
    """Fit a mean-field VI ReLU MLP (module docstring) on labels y.

    Args:
        x, y: the labelled sample `[n, d]`, `[n]`. prior_sigma: sigma_p > 0.
        ml_epochs, anneal_epochs: KL schedule (default epochs // 4 each). mc_samples: S fixed
            predictive draws. init_sigma: initial posterior std (0.05 ~ softplus(-3), the
            usual rho = -3 of Bayes-by-backprop layers). `train`: `fit_deterministic`'s
            training arguments (weight_decay must be 0: the prior is the regulariser).
    """
    epochs = int(train.get("epochs", 100))
    num_classes, cfg = make_config("vi", train, prior_sigma=prior_sigma, mc_samples=mc_samples, init_sigma=init_sigma,
                                   ml_epochs=epochs // 4 if ml_epochs is None else ml_epochs,
                                   anneal_epochs=epochs // 4 if anneal_epochs is None else anneal_epochs)
    if cfg.weight_decay != 0:
        raise ValueError(f"weight_decay must be 0 for kind 'vi' (its prior N(0, prior_sigma^2) regularises), "
                         f"got {cfg.weight_decay}")
    x, y, K = check_data(x, y, num_classes)
    with single_thread():
        t0 = time.perf_counter()
        gen = rng_mod.stream(cfg.seed, "teacher.fit", 0)
        tgen = torch.Generator().manual_seed(int(gen.integers(2**63 - 1)))
        shift, std = (x.mean(axis=0), x.std(axis=0)) if cfg.standardize else (np.zeros(x.shape[1]), np.ones(x.shape[1]))
        scale = np.where(std > 0, std, 1.0)
        layers = train_vi(torch.as_tensor((x - shift) / scale, dtype=_F64), torch.as_tensor(y), K, cfg, gen, tgen)
        return VITeacher(layers, shift, scale, K, cfg, time.perf_counter() - t0)
