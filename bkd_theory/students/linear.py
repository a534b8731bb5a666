"""The linear softmax student q = softmax(W xt), xt = (phi(x), 1) (DESIGN 2.5, E11): the fast path.

Per-sample gradients in closed form (E11): grad_W l = ((sum_k t_k) q - t) xt^T; for the Hinton loss
at a student temperature (E22, `KDTargets`) the logit residual is `kd.logit_residual`'s. In the pinned gauge
the K-th row of W is fixed at 0 and only the first K-1 rows are parameters, so gradients are the
first K-1 rows of E11. The SGD step fuses the outer product into the update. Checked against the
generic `ModuleStudent` on the same weights and against tests/oracles.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from synthetic import validation
from synthetic.features import augmented

from ..config import Features, Gauge
from .base import FeatureModel, Student, as_dtype, into
from .kd import logit_residual
from .registry import register_student

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..rng import Streams

#: up to this many samples per chain, the linear student avoids batched BLAS (see `Linear._logits`)
SMALL_BATCH = 16


def torch_features(x: torch.Tensor, kind: Features | str) -> torch.Tensor:
    """Return phi(x) `[..., F]`, the torch twin of `synthetic.features` (same column order)."""
    if Features.coerce(kind, "features") == Features.LINEAR:
        return x
    i, j = np.triu_indices(x.shape[-1])
    return torch.cat([x, x[..., i] * x[..., j]], dim=-1)


def fix_gauge(W: np.ndarray, gauge: Gauge | str = "pinned") -> np.ndarray:
    """Return the gauge representative of logit weights W `[K, F+1]` (DESIGN 2.5).

    Adding one vector to every row leaves softmax(W xt) unchanged. "pinned" subtracts the last row
    and drops it (`[K-1, F+1]`, the K-th row is fixed at 0); "full" centres the rows so they sum to
    zero (`[K, F+1]`, the minimum-norm representative).
    """
    gauge = Gauge.coerce(gauge, "gauge")
    W = validation.finite_array("W", W, ndim=2)
    if gauge == Gauge.PINNED:
        return (W - W[-1])[:-1]
    return W - W.mean(axis=0, keepdims=True)


@register_student("linear")
class Linear(Student):
    """Linear softmax student q = softmax(W xt), xt = (phi(x), 1) (DESIGN 2.5, E11).

    Parameters: W `[K', F+1]` flattened row-major, K' = K-1 ("pinned": the K-th row is 0 and not a
    parameter) or K ("full"). P = K'(F+1).
    """

    def __init__(self, task: "Task", gauge: Gauge | str = "pinned", features: Features | str = "linear",
                 dtype: Any = torch.float32) -> None:
        self.gauge = Gauge.coerce(gauge, "gauge")
        self.features = Features.coerce(features, "features")
        self.dtype = as_dtype(dtype)
        self.num_classes, self.dim = int(task.num_classes), int(task.dim)
        d = self.dim
        self.num_features = d if self.features == Features.LINEAR else d + d * (d + 1) // 2
        self.rows = self.num_classes - 1 if self.gauge == Gauge.PINNED else self.num_classes
        self.num_params = self.rows * (self.num_features + 1)
        self.spec = "linear"

    @classmethod
    def from_spec(cls, args: list[str], task: "Task", *, gauge: Gauge, features: Features, dtype: Any) -> "Linear":
        """"linear" takes no spec parameters; `gauge` and `features` come from the run's options."""
        if args:
            raise ValueError(f"student 'linear' takes no spec parameters, got 'linear:{':'.join(args)}'")
        return cls(task, gauge=gauge, features=features, dtype=dtype)

    def __repr__(self) -> str:
        return f"Linear(gauge={self.gauge.value!r}, features={self.features.value!r}, P={self.num_params})"

    def gauge_basis(self) -> np.ndarray:
        """Full gauge: 1_K / sqrt(K) kron I_{F+1} (one vector added to every row). Pinned: none."""
        if self.gauge == Gauge.PINNED:
            return np.zeros((self.num_params, 0))
        D = self.num_features + 1
        return np.kron(np.ones((self.num_classes, 1)) / np.sqrt(self.num_classes), np.eye(D))

    def feature_model(self) -> FeatureModel:
        kind = self.features.value
        return FeatureModel(self.rows, lambda x: augmented(x, kind), kind)

    def identifiable(self, delta: torch.Tensor) -> torch.Tensor:
        """Pinned gauge: `delta` itself. Full gauge: each column of W centred over the K rows
        (the projection off `gauge_basis`, computed without a matrix product)."""
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
        else:
            # one GEMM per chain (also for inputs shared by all chains): a single [B, D] x [D, R K'] GEMM
            # would be faster, but its last bits depend on R through the BLAS blocking
            z = torch.bmm(xt, theta.reshape(R, self.rows, -1).transpose(1, 2))
        if self.gauge == Gauge.PINNED:
            z = nn.functional.pad(z, (0, 1))
        return z

    def log_probs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log q `[R, B, K]`. Beyond `SMALL_BATCH` points per chain (the evaluation sample) the logits
        are made class-major, `[R, K, B]` by one GEMM per chain, and normalised along the class axis:
        torch's log_softmax is vectorised over the points then, and over K (3-5 classes) otherwise,
        4-5x slower. The result is a `[R, B, K]` view; it differs from the row-major path by a few
        ulp (another summation order inside the GEMM and the softmax)."""
        theta, xt = self._t(theta), self.xt(x)
        R, B = xt.shape[:2]
        if B <= SMALL_BATCH:
            return torch.log_softmax(self._logits(theta, xt), dim=-1)
        z = torch.bmm(theta.reshape(R, self.rows, -1), xt.transpose(1, 2))  # [R, K', B], per chain as in _logits
        if self.gauge == Gauge.PINNED:
            z = nn.functional.pad(z, (0, 0, 0, 1))  # the pinned class's logit row, 0
        return torch.log_softmax(z, dim=1).transpose(1, 2)

    def _coef(self, theta: torch.Tensor, xt: torch.Tensor, t: Any) -> torch.Tensor:
        # E11: grad_W l = r xt^T with the logit residual r = dl/df (`kd.logit_residual`: (sum_k t_k) q - t,
        # or E22's Hinton residual for `KDTargets`); row-wise, so chain-local. The pinned row K is not a parameter.
        return logit_residual(self._logits(self._t(theta), xt), t)[..., : self.rows]  # [R, B, K']

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
        return into(g.reshape(R, self.num_params), out)

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
        eye = torch.eye(self.num_classes, dtype=self.dtype, device=xt.device)[:, : self.rows]
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
        """theta* from the task's `logit_weights(features)` hook, in this student's gauge."""
        W = fix_gauge(task.logit_weights(self.features.value), self.gauge)
        if W.shape != (self.rows, self.num_features + 1):
            raise ValueError(f"task.optimum returned shape {W.shape}, expected {(self.rows, self.num_features + 1)}")
        return torch.from_numpy(W.reshape(-1).copy()).to(self.dtype)

    def _random(self, streams: "Streams", scale: float) -> torch.Tensor:
        return (scale * torch.from_numpy(streams.init.standard_normal(self.num_params))).to(self.dtype)
