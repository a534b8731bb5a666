"""The MLP student: a fully connected network, the fast specialisation of `ModuleStudent`.

The SGD hot path (`batch_grad`, `sgd_step`) and the per-sample gradients are one hand-written
backward pass over the stacked chains (per-sample gradients as outer products of the layers'
deltas and inputs); the probability Jacobian and the Hessian come from `torch.func`
(`functional_call`, `grad`, `vmap` over samples and over the chain axis of the flat parameters,
unflattened inside). Checked against the `torch.func` path, against `ModuleStudent` on the same
weights and against tests/oracles.py.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, hessian, jacrev, vmap

from synthetic import validation

from ..config import Features, Gauge
from .base import Student, as_dtype, residual_grads
from .kd import KDTargets, as_targets, logit_residual
from .registry import register_student

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from .rng import Streams

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "silu": nn.SiLU, "elu": nn.ELU}


#: d act(z) / dz from (z, a = act(z)), for the hand-written backward pass of `MLP.batch_grad`
DERIVATIVES = {
    "relu": lambda z, a: z > 0,  # a bool mask: multiplying by it is multiplying by 1.0 or 0.0
    "tanh": lambda z, a: 1.0 - a * a,
    "sigmoid": lambda z, a: a * (1.0 - a),
    "elu": lambda z, a: torch.where(z > 0, torch.ones_like(a), a + 1.0),
    "gelu": lambda z, a: 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi),
    "silu": lambda z, a: torch.sigmoid(z) * (1.0 + z * (1.0 - torch.sigmoid(z))),
}

def parse_widths(text: str, spec: str) -> tuple[int, ...]:
    """"64x64" -> (64, 64); ValueError naming the student spec otherwise."""
    parts = text.split("x")
    if not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"student: MLP widths must be positive integers like 'mlp:64x64', got {spec!r}")
    return tuple(int(p) for p in parts)


def _sum_into(gW: torch.Tensor, gb: torch.Tensor, dz: torch.Tensor, h: torch.Tensor) -> None:
    """One layer's gradient summed over the samples into gW `[R, out, in]` and gb `[R, out]`:
    dz_j^T h_j and sum_b dz_j for deltas dz `[R, B, out]` and layer inputs h `[R, B, in]`."""
    if dz.shape[1] == 1:  # outer products, written in place (bmm with k = 1 is slow)
        torch.mul(dz[:, 0, :, None], h[:, 0, None, :], out=gW)
        gb.copy_(dz[:, 0])
    else:
        gW.copy_(torch.bmm(dz.transpose(1, 2), h))
        torch.sum(dz, dim=1, out=gb)


@register_student("mlp")
class MLP(Student):
    """Fully connected softmax student with hidden `widths` and one `activation`.

    Flat layout: for each layer in order, W `[out, in]` row-major then b `[out]` (the order of
    `task.network().layers`). Per-sample gradients, the probability Jacobian and the Hessian come
    from `torch.func` through `functional_call`; `batch_grad` is a hand-written backward pass.
    Random init: nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from each chain's torch generator
    (`init_scale` is not used).
    """

    def __init__(self, task: "Task", widths: Sequence[int] = (128, 128), activation: str = "relu", dtype: Any = torch.float32):
        self.widths = tuple(validation.positive_int("widths", w) for w in widths)
        self.activation = validation.one_of("activation", str(activation).lower(), tuple(ACTIVATIONS))
        self.dtype = as_dtype(dtype)
        self.num_classes, self.dim = int(task.num_classes), int(task.dim)
        dims = (self.dim, *self.widths, self.num_classes)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b, device="meta", dtype=self.dtype))
            if i < len(dims) - 2:
                layers.append(ACTIVATIONS[self.activation]())
        self.module = nn.Sequential(*layers)
        self.shapes = [(name, tuple(p.shape)) for name, p in self.module.named_parameters()]
        self.num_params = sum(math.prod(s) for _, s in self.shapes)
        self._sizes = [math.prod(s) for _, s in self.shapes]  # the flat layout's blocks, for `layers`
        self._act = ACTIVATIONS[self.activation]()  # stateless: one instance serves every forward pass
        self.spec = "mlp:" + "x".join(map(str, self.widths)) + f":{self.activation}"
        self._psg = vmap(vmap(grad(self._loss), in_dims=(None, 0, 0)), in_dims=(0, 0, 0))

    spec_params = ("widths", "activation")

    @classmethod
    def from_spec(cls, args: list[str], task: "Task", *, gauge: Gauge, features: Features, dtype: Any) -> "MLP":
        """"mlp" (2x128 relu), "mlp:WxW" or "mlp:WxW:ACT"; `gauge`/`features` are the linear student's."""
        spec = ":".join(["mlp", *args])
        if len(args) > 2:
            raise ValueError(f"student must be 'mlp', 'mlp:WxW' or 'mlp:WxW:ACT', got {spec!r}")
        if gauge != Gauge.PINNED or features != Features.LINEAR:
            raise ValueError(f"gauge and features are options of the linear student; student {spec!r} takes neither")
        widths = parse_widths(args[0], spec) if args and args[0] else (128, 128)
        act = validation.one_of("student activation", (args[1] if len(args) == 2 else "relu").lower(), tuple(ACTIVATIONS))
        return cls(task, widths=widths, activation=act, dtype=dtype)

    def gauge_basis(self) -> np.ndarray:
        """The output layer's softmax gauge: one vector added to every class's weights and bias."""
        K, hidden = self.num_classes, self.shapes[-2][1][1]
        N = np.zeros((self.num_params, hidden + 1))
        tail = self.num_params - K * (hidden + 1)
        u = np.ones(K) / np.sqrt(K)
        for f in range(hidden):
            N[tail + np.arange(K) * hidden + f, f] = u
        N[tail + K * hidden + np.arange(K), hidden] = u
        return N

    def identifiable(self, delta: torch.Tensor) -> torch.Tensor:
        """Centre the output layer's weight rows and biases over the K classes: the projection off
        `gauge_basis`, computed without a matrix product."""
        K = self.num_classes
        hidden = self.shapes[-2][1][1]  # last weight is [K, hidden], last bias [K]
        tail = K * (hidden + 1)
        head, out = delta[..., :-tail], delta[..., -tail:]
        W = out[..., : K * hidden].reshape(*out.shape[:-1], K, hidden)
        b = out[..., K * hidden :]
        W = W - W.mean(dim=-2, keepdim=True)
        b = b - b.mean(dim=-1, keepdim=True)
        return torch.cat([head, W.reshape(*out.shape[:-1], K * hidden), b], dim=-1)

    def __repr__(self) -> str:
        return f"MLP(widths={self.widths}, activation={self.activation!r}, P={self.num_params}, dtype={self.dtype})"

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the parameter dict of the module from one chain's flat vector `[P]`."""
        out, i = {}, 0
        for name, shape in self.shapes:
            n = math.prod(shape)
            out[name] = flat[i : i + n].reshape(shape)
            i += n
        return out

    def _log_probs1(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(functional_call(self.module, self.unflatten(flat), (x,)), dim=-1)

    def _loss(self, flat: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -(t * self._log_probs1(flat, x)).sum(dim=-1)

    def _batch_loss(self, flat: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._loss(flat, x, t).mean()

    def layers(self, theta: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Return views [(W `[R, out, in]`, b `[R, out]`), ...] of stacked flat parameters `[R, P]`."""
        parts = theta.split(self._sizes, dim=1)
        return [(parts[i].view(-1, *self.shapes[i][1]), parts[i + 1]) for i in range(0, len(parts), 2)]

    def _forward(self, layers, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Batched forward `x [R, B, d]` -> logits `[R, B, K]`, pre-activations and layer inputs."""
        act = self._act
        h, zs, hs = x, [], [x]
        for j, (W, b) in enumerate(layers):
            z = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
            if j == len(layers) - 1:
                return z, zs, hs
            h = act(z)
            zs.append(z)
            hs.append(h)
        raise AssertionError("unreachable")  # pragma: no cover

    def log_probs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self._forward(self.layers(self._t(theta)), self._t(x))[0], dim=-1)

    def per_sample_grads(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Per-sample gradients `[R, B, P]` from one batched forward and backward pass (`_backprop`
        with the per-sample deltas kept): dW_j = dz_j h_j^T and db_j = dz_j for each sample, for E1's
        targets and for `KDTargets` (E22) alike. Equal to `per_sample_grads_func` to rounding."""
        theta = self._t(theta)
        R, B = theta.shape[0], x.shape[1]
        out = theta.new_empty(R, B, theta.shape[1])
        grads = self.layers(out.view(R * B, -1))

        def emit(j: int, dz: torch.Tensor, h: torch.Tensor) -> None:
            gW, gb = grads[j]
            torch.mul(dz.reshape(R * B, -1, 1), h.reshape(R * B, 1, -1), out=gW)
            gb.copy_(dz.reshape(R * B, -1))

        self._backprop(theta, x, t, float(B), emit)  # scale B undoes the minibatch mean: one sample's gradient
        return out

    def grad_norms_and_sum(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(||g_rc||^2 `[R, c]`, sum_c g_rc `[R, P]`) in float64 without forming the per-sample gradients:
        sample i's layer-j gradient is the outer product dz_ij h_ij^T plus the bias dz_ij, so its squared
        norm is ||dz_ij||^2 (||h_ij||^2 + 1), and the sum over samples is one `bmm` per layer."""
        theta = self._t(theta)
        R, c = theta.shape[0], x.shape[1]
        sq = theta.new_zeros(R, c, dtype=torch.float64)
        total = theta.new_empty(theta.shape)
        grads = self.layers(total)

        def emit(j: int, dz: torch.Tensor, h: torch.Tensor) -> None:
            dz2, h2 = dz.to(torch.float64).square().sum(-1), h.to(torch.float64).square().sum(-1)
            sq.add_(dz2 * (h2 + 1.0))
            _sum_into(*grads[j], dz, h)

        self._backprop(theta, x, t, float(c), emit)  # scale c: per-sample deltas (one sample's gradient)
        return sq, total.to(torch.float64)

    def per_sample_grads_func(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Per-sample gradients by `torch.func` (the reference of `per_sample_grads`): `vmap` over chains
        of `vmap` over samples of `grad` (of E1), or of the vector-Jacobian product with the logit
        residual (`KDTargets`, E22)."""
        if isinstance(t, KDTargets):
            logits1 = lambda flat, xi: functional_call(self.module, self.unflatten(flat), (xi[None],))[0]  # noqa: E731
            return residual_grads(logits1, self._t(theta), self._t(x), t.to(self.dtype))
        return self._psg(self._t(theta), self._t(x), self._t(t))

    def _backprop(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, scale: float, emit) -> None:
        """Hand-written backward pass over the stacked chains; `emit(j, dz_j, h_j)` per layer, last first.

        dl/dz_L = scale r / B at the logits, r the logit residual (`kd.logit_residual`: (sum t) q - t,
        E11 for the last layer, or E22's Hinton residual), then
        dW_j = dz_j^T h_j, db_j = sum_b dz_j, dz_{j-1} = (dz_j W_j) * act'(z_{j-1}). Checked against
        `per_sample_grads` (torch.func) and the autograd loop of tests/oracles.py.
        """
        theta, x, t = self._t(theta), self._t(x), as_targets(t, self.dtype)
        layers = self.layers(theta)
        logits, zs, hs = self._forward(layers, x)
        dz = logit_residual(logits, t) * (scale / x.shape[1])
        for j in range(len(layers) - 1, -1, -1):
            emit(j, dz, hs[j])
            if j > 0:
                dz = torch.bmm(dz, layers[j][0]) * DERIVATIVES[self.activation](zs[j - 1], hs[j])

    def batch_grad(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, *, out: torch.Tensor | None = None,
                   scale: float = 1.0) -> torch.Tensor:
        """Minibatch gradient (times `scale`) by the hand-written backward pass (`_backprop`)."""
        out = self._t(theta).new_empty(theta.shape) if out is None else out
        grads = self.layers(out)

        self._backprop(theta, x, t, scale, lambda j, dz, h: _sum_into(*grads[j], dz, h))
        return out

    def sgd_step(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, gamma: float, *, out: torch.Tensor) -> torch.Tensor:
        """theta - gamma * batch_grad into `out`, each layer's update fused with its outer product.

        Every kernel is chain-local; the batched GEMMs round with the alignment of a chain's weights,
        which the loop keeps the same for every chain (`engine.rows`; tests/test_stack.py).
        """
        if x.shape[1] != 1:
            return super().sgd_step(theta, x, t, gamma, out=out)
        old, new = self.layers(self._t(theta)), self.layers(out)

        def emit(j: int, dz: torch.Tensor, h: torch.Tensor) -> None:
            torch.addcmul(old[j][0], dz[:, 0, :, None], h[:, 0, None, :], out=new[j][0])
            torch.add(old[j][1], dz[:, 0], out=new[j][1])

        self._backprop(theta, x, t, -gamma, emit)
        return out

    def prob_jacobian(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        probs = lambda flat, xi: self._log_probs1(flat, xi).exp()  # noqa: E731
        return vmap(jacrev(probs), in_dims=(None, 0))(self._t(theta), self._t(x))

    def hessian(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return hessian(self._batch_loss)(self._t(theta), self._t(x), self._t(t))

    def optimum(self, task: "Task") -> torch.Tensor:
        """theta* from the task's declared `network()`, when its architecture is this student's."""
        try:
            net = task.network()
        except ValueError as err:
            raise ValueError(f"student {self.spec!r} is not realizable for task {task.name!r}: {err}") from None
        if net.widths != self.widths or net.activation.lower() != self.activation:
            raise ValueError(f"student {self.spec!r} is not realizable for task {task.name!r}: the task's network has "
                             f"widths={net.widths} and activation={net.activation!r}")
        flat = np.concatenate([np.concatenate([np.asarray(W, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)])
                               for W, b in net.layers])
        if flat.size != self.num_params:
            raise ValueError(f"task.network() has {flat.size} parameters, expected {self.num_params}")
        return torch.from_numpy(flat).to(self.dtype)

    def _random(self, streams: "Streams", scale: float) -> torch.Tensor:
        # nn.Linear's default, drawn in float64 so both dtypes start from the same numbers
        out, fan_in = [], self.dim
        for _, shape in self.shapes:
            if len(shape) == 2:
                fan_in = shape[1]
            u = torch.rand(math.prod(shape), generator=streams.torch, dtype=torch.float64)
            out.append((2.0 * u - 1.0) / math.sqrt(fan_in))
        return torch.cat(out).to(self.dtype)
