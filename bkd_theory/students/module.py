"""Any `torch.nn.Module` as a student, stacked over chains with `torch.func` (DESIGN 4, 5).

`ModuleStudent(module)` takes a module mapping x `[N, d]` to logits `[N, K]` and runs R copies of it
as one flat parameter tensor `theta [R, P]` (the module's parameters in `named_parameters()`
order, each flattened row-major): the forward pass is `torch.func.functional_call` with the
chain's parameters, `vmap`-ed over chains; gradients, Jacobians and Hessians are `torch.func`
transforms of it. The module itself only provides the architecture; it is never updated.

Buffers (e.g. BatchNorm running statistics in eval mode) are constants shared by every chain.
Layers whose training-mode forward mixes samples or draws random numbers (BatchNorm with batch
statistics, Dropout) are refused: per-sample gradients and chain independence need a forward pass
that is a fixed function of one sample. LayerNorm, which normalises each sample on its own, is fine.

Initial parameters ("random" init): the module's own `reset_parameters()` on a copy, run under a
torch seed drawn from the chain's `init` stream, so chain r's start depends on its stream only.
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from .base import Student, as_dtype, residual_grads
from .kd import KDTargets

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..rng import Streams

__all__ = ["ModuleStudent"]

_SAMPLE_MIXING = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.AlphaDropout,
                  nn.FeatureAlphaDropout)


def _check_module(module: nn.Module) -> None:
    for name, sub in module.named_modules():
        if isinstance(sub, _SAMPLE_MIXING) and sub.training:
            kind = type(sub).__name__
            raise ValueError(
                f"module layer {name or '<root>'!r} ({kind}) is in training mode: its forward pass mixes the "
                f"samples of a batch or draws random numbers, so per-sample gradients are not defined. Call "
                f"module.eval() to use it as a fixed function (BatchNorm then uses its running statistics), "
                f"or use a per-sample layer such as nn.LayerNorm")


class ModuleStudent(Student):
    """A student from any `nn.Module` mapping x `[N, d]` to logits `[N, K]`.

    Args:
        module: the architecture (copied; never trained in place).
        dtype: parameter dtype, "float32" or "float64".
        theta_star: theta* `[P]` (flat, `named_parameters()` order) or a state dict, when the user
            knows it; otherwise `optimum` reads the task's `network()` hook and accepts it when the
            module's parameter shapes are exactly those layers (W, b, W, b, ...).
        gauge_basis: orthonormal directions `[P, m]` that never change the softmax, when known.
        name: the student's spec in run records (default "module:<class name>").
        num_classes, dim: K and d, checked by a forward pass on a zero input when `task` is not
            given; optional.
    """

    def __init__(self, module: nn.Module, *, dtype: Any = torch.float32, theta_star: Any = None,
                 gauge_basis: np.ndarray | None = None, name: str | None = None, dim: int | None = None,
                 num_classes: int | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        _check_module(module)
        self.dtype = as_dtype(dtype)
        self.module = copy.deepcopy(module).to(self.dtype)
        self.names = [n for n, _ in self.module.named_parameters()]
        if not self.names:
            raise ValueError("module must have at least one parameter")
        self.shapes = [tuple(p.shape) for _, p in self.module.named_parameters()]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.num_params = int(sum(self.sizes))
        self.buffers = {n: b for n, b in self.module.named_buffers()}
        self.spec = name or f"module:{type(module).__name__}"
        self.dim, self.num_classes = self._probe_shapes(dim, num_classes)
        self._theta_star = None if theta_star is None else self._flat(theta_star, "theta_star")
        self._gauge = None if gauge_basis is None else np.asarray(gauge_basis, dtype=np.float64)
        if self._gauge is not None and (self._gauge.ndim != 2 or self._gauge.shape[0] != self.num_params):
            raise ValueError(f"gauge_basis must have shape [P={self.num_params}, m], got {self._gauge.shape}")
        one = lambda flat, x: self._forward(flat, x[None])[0]  # noqa: E731  one sample x [d] -> logits [K]
        self._psg = vmap(vmap(grad(self._loss1), in_dims=(None, 0, 0)), in_dims=(0, 0, 0))
        self._bg = vmap(grad(self._batch_loss), in_dims=(0, 0, 0))
        self._lp = vmap(lambda flat, x: torch.log_softmax(self._forward(flat, x), dim=-1), in_dims=(0, 0))
        self._jac = vmap(jacrev(lambda flat, x: torch.softmax(one(flat, x), dim=-1)), in_dims=(None, 0))

    # ------------------------------------------------------------------ plumbing
    def to_device(self, device: torch.device | str) -> "ModuleStudent":
        """Compute on `device`: the module's buffers move there too; returns self."""
        super().to_device(device)
        self.module.to(self.device)
        self.buffers = {n: b for n, b in self.module.named_buffers()}
        return self

    def _probe_shapes(self, dim: int | None, num_classes: int | None) -> tuple[int, int]:
        first = next(p for p in self.module.parameters())
        d = dim if dim is not None else (first.shape[-1] if first.ndim == 2 else None)
        if d is None:
            raise ValueError("dim (the input dimension d) is needed: the module's first parameter is not a matrix")
        with torch.no_grad():
            out = self.module(torch.zeros(2, int(d), dtype=self.dtype))
        if out.ndim != 2 or out.shape[0] != 2:
            raise ValueError(f"module must map x [N, d] to logits [N, K]; it returned shape {tuple(out.shape)} for [2, {d}]")
        if num_classes is not None and out.shape[1] != num_classes:
            raise ValueError(f"module returns {out.shape[1]} logits, expected num_classes={num_classes}")
        if out.shape[1] < 2:
            raise ValueError(f"module must return K >= 2 logits, got {out.shape[1]}")
        return int(d), int(out.shape[1])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """One chain's flat parameters `[P]` as the module's parameter dict."""
        out, i = {}, 0
        for name, shape, n in zip(self.names, self.shapes, self.sizes):
            out[name] = flat[i:i + n].reshape(shape)
            i += n
        return out

    def _flat(self, value: Any, what: str) -> torch.Tensor:
        if isinstance(value, dict):
            missing = [n for n in self.names if n not in value]
            if missing:
                raise ValueError(f"{what} is missing parameters {missing}")
            value = torch.cat([torch.as_tensor(value[n], dtype=torch.float64).reshape(-1) for n in self.names])
        flat = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        if flat.numel() != self.num_params:
            raise ValueError(f"{what} must have P={self.num_params} entries, got {flat.numel()}")
        return flat

    def _forward(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, (self.unflatten(flat), self.buffers), (x,))

    def _loss1(self, flat: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -(t * torch.log_softmax(self._forward(flat, x[None])[0], dim=-1)).sum()

    def _batch_loss(self, flat: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -(t * torch.log_softmax(self._forward(flat, x), dim=-1)).sum(dim=-1).mean()

    # ------------------------------------------------------------------ the protocol
    def log_probs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._lp(self._t(theta), self._t(x))

    def per_sample_grads(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if isinstance(t, KDTargets):  # E22: vector-Jacobian products with the logit residual
            logits1 = lambda flat, xi: self._forward(flat, xi[None])[0]  # noqa: E731
            return residual_grads(logits1, self._t(theta), self._t(x), t.to(self.dtype))
        return self._psg(self._t(theta), self._t(x), self._t(t))

    def batch_grad(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, *, out: torch.Tensor | None = None,
                   scale: float = 1.0) -> torch.Tensor:
        if isinstance(t, KDTargets):
            g = self.per_sample_grads(theta, x, t).mean(dim=1)
        else:
            g = self._bg(self._t(theta), self._t(x), self._t(t))
        g = g * scale if scale != 1.0 else g
        return g if out is None else out.copy_(g)

    def prob_jacobian(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._jac(self._t(theta), self._t(x))

    def hessian(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """By `torch.autograd.functional.hessian`: `torch.func.hessian` (and jacrev of jacrev) gives wrong
        second derivatives through `layer_norm` in torch 2.13 (pytorch/pytorch#196700; tested here)."""
        x, t = self._t(x), self._t(t)
        return torch.autograd.functional.hessian(lambda flat: self._batch_loss(flat, x, t), self._t(theta), vectorize=True)

    def gauge_basis(self) -> np.ndarray:
        return np.zeros((self.num_params, 0)) if self._gauge is None else self._gauge

    def optimum(self, task: "Task") -> torch.Tensor:
        """The given theta*, or the task's declared network when its layers are this module's parameters."""
        if self._theta_star is not None:
            return self._theta_star.to(self.dtype)
        try:
            net = task.network()
        except ValueError as err:
            raise ValueError(f"student {self.spec!r} is not realizable for task {task.name!r}: {err}; "
                             "pass theta_star= if you know it") from None
        arrays = [a for W, b in net.layers for a in (W, b)]
        if [tuple(np.shape(a)) for a in arrays] != self.shapes:
            raise ValueError(f"student {self.spec!r} is not realizable for task {task.name!r}: its parameter shapes "
                             f"{self.shapes} are not the task network's {[tuple(np.shape(a)) for a in arrays]}")
        return torch.cat([torch.as_tensor(np.asarray(a, np.float64)).reshape(-1) for a in arrays]).to(self.dtype)

    def _random(self, streams: "Streams", scale: float) -> torch.Tensor:
        seed = int(streams.init.integers(2**62))
        fresh = copy.deepcopy(self.module)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for sub in fresh.modules():
                if hasattr(sub, "reset_parameters") and callable(sub.reset_parameters):
                    sub.reset_parameters()
        return torch.cat([p.detach().reshape(-1) for p in fresh.parameters()]).to(self.dtype)
