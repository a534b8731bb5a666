"""Students stacked over R independent SGD chains (DESIGN 2.5, 4).

The parameters of all R chains are ONE flat tensor `theta [R, P]`. A student maps raw task inputs
x `[R, B, d]` to log-probabilities `[R, B, K]` and gives gradients of the per-sample loss (E1)
l(theta; x, t) = -sum_k t_k log q_theta,k(x); a minibatch gradient is the mean over B
(`bkd_theory.losses` pins the convention).

- `Linear`: softmax(W xt), xt = (phi(x), 1), bias last, W flattened row-major. Per-sample gradients
  in closed form (E11): grad_W l = ((sum_k t_k) q - t) xt^T. In the pinned gauge the K-th row of W is
  fixed at 0 and only the first K-1 rows are parameters, so gradients are the first K-1 rows of E11.
- `MLP` (defined in `_mlp`, re-exported here): a fully connected network. Per-sample gradients
  through `torch.func` (`functional_call`, `grad`), `vmap`-ed over samples and over chains (the
  chain axis of the flat parameters); the SGD hot path by a hand-written backward pass.

The SGD loop calls `batch_grad` (with momentum) or `sgd_step` (plain SGD, outer products fused
into the update). Both use chain-local operations only (row-wise softmax, broadcast products,
per-matrix bmm), so a chain gives the same bits alone as inside a batch of R (tested).

Slow, obvious references with the same signatures live in `tests/oracles.py`.
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

from synthetic import validation

from .config import Features, Gauge, Init

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from .rng import Streams

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: up to this many samples per chain, the linear student avoids batched BLAS (see `Linear._logits`)
SMALL_BATCH = 16


def as_dtype(dtype: Any) -> torch.dtype:
    """Return the torch dtype for `dtype` ("float32", "float64" or a torch dtype)."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")


def torch_features(x: torch.Tensor, kind: Features) -> torch.Tensor:
    """Return phi(x) `[..., F]`, the torch twin of `synthetic.features` (same column order)."""
    if kind == Features.LINEAR:
        return x
    i, j = np.triu_indices(x.shape[-1])
    return torch.cat([x, x[..., i] * x[..., j]], dim=-1)


def _into(g: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    return g if out is None else out.copy_(g)


class Student(abc.ABC):
    """A model q_theta(x) = softmax(f_theta(x)) stacked over chains.

    Attributes:
        spec: CLI spec ("linear", "mlp:64x64:tanh", ...).
        num_params: P. num_classes: K. dim: d. dtype: parameter dtype.
    """

    spec: str
    num_params: int
    num_classes: int
    dim: int
    dtype: torch.dtype

    def _t(self, a: Any) -> torch.Tensor:
        return torch.as_tensor(a, dtype=self.dtype)

    @abc.abstractmethod
    def log_probs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Return log q_theta(x) `[R, B, K]` for theta `[R, P]` and x `[R, B, d]`."""

    @abc.abstractmethod
    def per_sample_grads(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Return grad_theta l(theta_r; x_rb, t_rb) (E1) `[R, B, P]` for t `[R, B, K]`."""

    def batch_grad(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, *, out: torch.Tensor | None = None,
                   scale: float = 1.0) -> torch.Tensor:
        """Return `scale` times the minibatch gradient (mean over B of E1 gradients) `[R, P]`.

        `out` receives the result when given; `scale` (e.g. -gamma) is applied to small per-sample
        factors before the outer products, so a scaled step costs no extra pass over `[R, P]`.
        """
        return _into(self.per_sample_grads(theta, x, t).mean(dim=1) * scale, out)

    def sgd_step(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, gamma: float, *, out: torch.Tensor) -> torch.Tensor:
        """Write the plain SGD step theta - gamma * batch_grad(theta, x, t) into `out` `[R, P]` and return it.

        Subclasses fuse the outer products of the gradient into the update (one pass over `[R, P]`).
        """
        return torch.add(theta, self.batch_grad(theta, x, t, scale=-gamma), out=out)

    @abc.abstractmethod
    def prob_jacobian(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Return J[n, k] = d q_theta,k(x_n) / d theta `[N, K, P]` for theta `[P]`, x `[N, d]` (DESIGN 2.5)."""

    @abc.abstractmethod
    def hessian(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Return the Hessian of the mean over N of E1 `[P, P]` for theta `[P]`, x `[N, d]`, t `[N, K]`."""

    @abc.abstractmethod
    def optimum(self, task: "Task") -> torch.Tensor:
        """Return theta* `[P]` with q_theta* = p; ValueError if the student is not realizable."""

    def identifiable(self, delta: torch.Tensor) -> torch.Tensor:
        """Return the part of parameter displacements `delta` `[..., P]` that changes the model.

        The softmax is unchanged when the same vector is added to every class's output weights (and
        the same number to every output bias): that gauge direction has zero gradient, so SGD never
        moves along it (DESIGN 2.5, "Gauge"). This removes it by centring the output rows; distances
        to theta* and init perturbations are taken on what remains. Identity when there is no gauge.
        """
        return delta

    @abc.abstractmethod
    def _random(self, streams: "Streams", scale: float) -> torch.Tensor:
        """Return one chain's random initial parameters `[P]`."""

    def init_params(self, how: Init | str, R: int, task: "Task", streams: "Sequence[Streams]", scale: float) -> torch.Tensor:
        """Return initial parameters `[R, P]`; chain r draws only from `streams[r]`.

        Args:
            how: "optimum" (theta*), "perturbed" (theta* + scale N(0, I) from each chain's `init`
                stream, less its gauge component: `identifiable`), "zero", or "random" (see the subclass).
            R: number of chains. task: the task (for theta*). streams: R chain streams.
            scale: perturbation / random-init scale (>= 0).
        """
        how = Init.coerce(how, "init")
        R = validation.positive_int("R", R)
        scale = validation.nonnegative("init_scale", scale)
        if len(streams) != R:
            raise ValueError(f"streams must hold one Streams per chain (R={R}), got {len(streams)}")
        if how == Init.ZERO:
            return torch.zeros(R, self.num_params, dtype=self.dtype)
        if how == Init.RANDOM:
            return torch.stack([self._random(s, scale) for s in streams])
        star = self.optimum(task).to(torch.float64)
        theta = star.expand(R, -1).clone()
        if how == Init.PERTURBED:
            noise = np.stack([s.init.standard_normal(self.num_params) for s in streams])
            theta = theta + scale * self.identifiable(torch.from_numpy(noise))
        return theta.to(self.dtype)


class Linear(Student):
    """Linear softmax student q = softmax(W xt), xt = (phi(x), 1) (DESIGN 2.5, E11).

    Parameters: W `[K', F+1]` flattened row-major, K' = K-1 ("pinned": the K-th row is 0 and not a
    parameter) or K ("full"). P = K'(F+1).
    """

    def __init__(self, task: "Task", gauge: Gauge | str = "pinned", features: Features | str = "linear", dtype: Any = torch.float32):
        self.gauge = Gauge.coerce(gauge, "gauge")
        self.features = Features.coerce(features, "features")
        self.dtype = as_dtype(dtype)
        self.num_classes, self.dim = int(task.num_classes), int(task.dim)
        d = self.dim
        self.num_features = d if self.features == Features.LINEAR else d + d * (d + 1) // 2
        self.rows = self.num_classes - 1 if self.gauge == Gauge.PINNED else self.num_classes
        self.num_params = self.rows * (self.num_features + 1)
        self.spec = "linear"

    def __repr__(self) -> str:
        return f"Linear(gauge={self.gauge.value!r}, features={self.features.value!r}, P={self.num_params})"

    def identifiable(self, delta: torch.Tensor) -> torch.Tensor:
        """Pinned gauge: `delta` itself. Full gauge: each column of W centred over the K rows."""
        if self.gauge == Gauge.PINNED:
            return delta
        W = delta.reshape(*delta.shape[:-1], self.rows, self.num_features + 1)
        return (W - W.mean(dim=-2, keepdim=True)).reshape(delta.shape)

    def xt(self, x: torch.Tensor) -> torch.Tensor:
        """Return xt = (phi(x), 1) `[..., F+1]` (inputs shared by all chains stay shared)."""
        x = self._t(x)
        if x.dim() == 3 and x.shape[0] > 1 and x.stride(0) == 0:  # e.g. the eval set, expanded over chains
            return self.xt(x[:1]).expand(x.shape[0], -1, -1)
        phi = torch_features(x, self.features)
        return torch.cat([phi, phi.new_ones(*phi.shape[:-1], 1)], dim=-1)

    def _logits(self, theta: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        R, B = xt.shape[:2]
        if B <= SMALL_BATCH:
            # broadcast-and-sum rather than bmm: each chain's numbers are then computed the same way
            # whatever R is (the SGD loop's exact chain independence rests on this)
            z = (xt.unsqueeze(-2) * theta.reshape(R, 1, self.rows, -1)).sum(dim=-1)  # [R, B, K']
        elif xt.stride(0) == 0:  # one input set for all chains: a single GEMM
            z = (xt[0] @ theta.reshape(R * self.rows, -1).T).reshape(B, R, self.rows).transpose(0, 1)
        else:
            z = torch.bmm(xt, theta.reshape(R, self.rows, -1).transpose(1, 2))
        if self.gauge == Gauge.PINNED:
            z = nn.functional.pad(z, (0, 1))
        return z

    def log_probs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self._logits(self._t(theta), self.xt(x)), dim=-1)

    def _coef(self, theta: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # E11: grad_W l = ((sum_k t_k) q - t) xt^T; the pinned row K is not a parameter.
        t = self._t(t)
        q = torch.softmax(self._logits(self._t(theta), xt), dim=-1)  # row-wise: chain-local
        return (t.sum(dim=-1, keepdim=True) * q - t)[..., : self.rows]  # [R, B, K']

    def per_sample_grads(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        xt = self.xt(x)
        coef = self._coef(theta, xt, t)
        return (coef.unsqueeze(-1) * xt.unsqueeze(-2)).reshape(*coef.shape[:2], self.num_params)

    def batch_grad(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, *, out: torch.Tensor | None = None,
                   scale: float = 1.0) -> torch.Tensor:
        xt = self.xt(x)
        R, B = xt.shape[:2]
        coef = self._coef(theta, xt, t) * (scale / B)  # [R, B, K']
        if B == 1:  # one outer product per chain
            dst = None if out is None else out.view(R, self.rows, -1)
            return torch.mul(coef[:, 0, :, None], xt[:, 0, None, :], out=dst).reshape(R, self.num_params)
        if B <= SMALL_BATCH:
            g = (coef.unsqueeze(-1) * xt.unsqueeze(-2)).sum(dim=1)  # [R, K', F+1], chain-local like the logits
        else:
            g = torch.bmm(coef.transpose(1, 2), xt)
        return _into(g.reshape(R, self.num_params), out)

    def sgd_step(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, gamma: float, *, out: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 1:
            return super().sgd_step(theta, x, t, gamma, out=out)
        xt = self.xt(x)
        coef = self._coef(theta, xt, t) * -gamma
        R = coef.shape[0]
        torch.addcmul(theta.view(R, self.rows, -1), coef[:, 0, :, None], xt[:, 0, None, :], out=out.view(R, self.rows, -1))
        return out

    def prob_jacobian(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # d q_k / d W_jf = q_k (delta_kj - q_j) xt_f, for the free rows j < K'.
        xt = self.xt(x)  # [N, F+1]
        q = torch.softmax(self._logits(self._t(theta)[None], xt[None])[0], dim=-1)  # [N, K]
        eye = torch.eye(self.num_classes, dtype=self.dtype)[:, : self.rows]
        a = q[:, :, None] * (eye[None] - q[:, None, : self.rows])  # [N, K, K']
        return (a[..., None] * xt[:, None, None, :]).reshape(len(xt), self.num_classes, self.num_params)

    def hessian(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # Per sample: (sum_k t_k) (diag q - q q^T) kron xt xt^T, restricted to the free rows.
        xt, t = self.xt(x), self._t(t)
        q = torch.softmax(self._logits(self._t(theta)[None], xt[None])[0], dim=-1)[:, : self.rows]
        a = (torch.diag_embed(q) - q[:, :, None] * q[:, None, :]) * t.sum(dim=-1)[:, None, None]
        H = torch.einsum("nij,nf,ng->ifjg", a, xt, xt) / len(xt)
        return H.reshape(self.num_params, self.num_params)

    def optimum(self, task: "Task") -> torch.Tensor:
        W = task.optimum(gauge=self.gauge.value, features=self.features.value)
        W = np.asarray(W, dtype=np.float64)
        if W.shape != (self.rows, self.num_features + 1):
            raise ValueError(f"task.optimum returned shape {W.shape}, expected {(self.rows, self.num_features + 1)}")
        return torch.from_numpy(W.reshape(-1).copy()).to(self.dtype)

    def _random(self, streams: "Streams", scale: float) -> torch.Tensor:
        return (scale * torch.from_numpy(streams.init.standard_normal(self.num_params))).to(self.dtype)


def parse_student_spec(spec: str) -> tuple[str, tuple[int, ...], str]:
    """Return (kind, widths, activation) for "linear" | "mlp" | "mlp:64x64" | "mlp:64x64:tanh"."""
    if not isinstance(spec, str):
        raise ValueError(f"student must be a spec string like 'linear' or 'mlp:64x64:tanh', got {spec!r}")
    parts = spec.strip().lower().split(":")
    if parts == ["linear"]:
        return "linear", (), ""
    if parts[0] == "mlp" and len(parts) <= 3:
        text = parts[1] if len(parts) > 1 and parts[1] else "128x128"
        widths = tuple(int(w) for w in text.split("x") if w.isdigit())
        if len(widths) != len(text.split("x")) or min(widths) < 1:
            raise ValueError(f"student: MLP widths must be positive integers like 'mlp:64x64', got {spec!r}")
        from ._mlp import ACTIVATIONS

        act = validation.one_of("student activation", parts[2] if len(parts) == 3 else "relu", tuple(ACTIVATIONS))
        return "mlp", widths, act
    raise ValueError(f"student must be 'linear', 'mlp', 'mlp:WxW' or 'mlp:WxW:ACT', got {spec!r}")


def __getattr__(name: str) -> Any:
    """`students.MLP`, `students.ACTIVATIONS`, `students.DERIVATIVES` live in `_mlp` (loaded lazily)."""
    if name in ("MLP", "ACTIVATIONS", "DERIVATIVES"):
        from . import _mlp

        return getattr(_mlp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_student(spec: str, task: "Task", *, gauge: Gauge | str = "pinned", features: Features | str = "linear", dtype: Any = torch.float32) -> Student:
    """Build a student from its CLI spec ("linear", "mlp" = 2x128 relu, "mlp:64x64", "mlp:64x64:tanh")."""
    kind, widths, act = parse_student_spec(spec)
    if kind == "linear":
        return Linear(task, gauge=gauge, features=features, dtype=dtype)
    from ._mlp import MLP

    return MLP(task, widths=widths, activation=act, dtype=dtype)
