"""The Student protocol: a model q_theta(x) = softmax(f_theta(x)) stacked over R chains (DESIGN 2.5, 4).

The parameters of all R chains are ONE flat tensor `theta [R, P]`. A student maps raw task inputs
x `[R, B, d]` to log-probabilities `[R, B, K]` and gives gradients of the per-sample loss (E1)
l(theta; x, t) = -sum_k t_k log q_theta,k(x); a minibatch gradient is the mean over B
(`bkd_theory.losses` pins the convention). Every operation is chain-local, so chain r gives the
same bits alone as inside a batch of R (tested for every registered student).

Declared hooks the theory reads (no `isinstance` anywhere):
- `gauge_basis()`: an orthonormal basis `[P, m]` of the parameter directions that never change q
  (softmax gauge). `identifiable` removes them (distances, perturbed inits).
- `feature_model()`: for students whose logits are linear in a fixed feature map,
  f = W phi~(x), the map and the free rows; the theory then uses the closed forms of E11.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch.func import vjp, vmap

from synthetic import validation

from ..config import Init
from .kd import KDTargets, logit_residual

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..rng import Streams

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def as_dtype(dtype: Any) -> torch.dtype:
    """Return the torch dtype for `dtype` ("float32", "float64" or a torch dtype)."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.lower().removeprefix("torch.")]
    raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")


def dtype_name(dtype: torch.dtype) -> str:
    """"float32" or "float64"."""
    return str(dtype).removeprefix("torch.")


def into(g: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """`g`, copied into `out` when given."""
    return g if out is None else out.copy_(g)


def residual_grads(logits1: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], theta: torch.Tensor,
                   x: torch.Tensor, t: KDTargets) -> torch.Tensor:
    """Per-sample gradients J_f(x)^T r(x) `[R, B, P]` by `torch.func`: for each chain and sample, the
    vector-Jacobian product of one sample's logits `logits1(flat [P], x [d]) -> [K]` with the logit
    residual r = `kd.logit_residual` (E22's Hinton loss; the students' generic path for `KDTargets`)."""
    T = t.T

    def one(flat: torch.Tensor, xi: torch.Tensor, hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        f, pull = vjp(lambda w: logits1(w, xi), flat)
        return pull(logit_residual(f, KDTargets(hard, soft, T)))[0]

    return vmap(vmap(one, in_dims=(None, 0, 0, 0)), in_dims=(0, 0, 0, 0))(theta, x, t.hard, t.soft)


@dataclass(frozen=True)
class FeatureModel:
    """Logits linear in a fixed feature map: f_k = W_k phi~(x) for the free rows k < rows, f_k = 0 else.

    Attributes:
        rows: K' free rows of W (K - 1 in the pinned gauge, K in the full gauge).
        features: numpy map x `[N, d]` -> phi~(x) `[N, D]` (constant feature included).
        kind: "linear" or "quadratic" (`synthetic.features`): the degree of phi~ in x.
    Parameters are W `[K', D]` flattened row-major: index j * D + f.
    """

    rows: int
    features: Callable[[np.ndarray], np.ndarray]
    kind: str


class Student(abc.ABC):
    """A model q_theta(x) = softmax(f_theta(x)) stacked over chains.

    Attributes:
        spec: a short name for records ("linear", "mlp:64x64:tanh", "module:ResTanh").
        num_params: P. num_classes: K. dim: d. dtype: parameter dtype.
        device: the torch device inputs are moved to (`to_device`; the CPU unless a run sets it).
    """

    spec: str
    num_params: int
    num_classes: int
    dim: int
    dtype: torch.dtype
    device: torch.device = torch.device("cpu")

    def to_device(self, device: torch.device | str) -> "Student":
        """Compute on `device` from now on (inputs are moved there by every method); returns self.
        A subclass holding tensors of its own (e.g. a module's buffers) moves them too."""
        self.device = torch.device(device)
        return self

    def _t(self, a: Any) -> torch.Tensor:
        if isinstance(a, KDTargets):  # the paths that accept them convert with kd.as_targets instead
            raise ValueError("targets: KDTargets (a KD temperature, E22) are taken by per_sample_grads, batch_grad and "
                             "sgd_step only; hessian and the other cross-entropy (E1) paths need a target tensor")
        return torch.as_tensor(a, dtype=self.dtype, device=self.device)

    # ------------------------------------------------------------------ the model
    @abc.abstractmethod
    def log_probs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Return log q_theta(x) `[R, B, K]` for theta `[R, P]` and x `[R, B, d]`."""

    @abc.abstractmethod
    def per_sample_grads(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Return grad_theta l(theta_r; x_rb, t_rb) `[R, B, P]` for t `[R, B, K]` (E1) or `KDTargets` (E22).

        `per_sample_grads`, `batch_grad` and `sgd_step` accept both kinds of targets
        (`students.kd`); `hessian` is E1's only.
        """

    def grad_norms_and_sum(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (||g_rc||^2 `[R, c]`, sum_c g_rc `[R, P]`), both float64, of the per-sample gradients
        g_rc of `per_sample_grads` (the inputs of the gradient-moment instruments, E4/E5 estimates).

        float64 gradients are summed as they are; float32 ones by a batched dot product in float32 (a
        relative rounding error ~1e-6 over P terms, far below the estimates' statistical error), then
        accumulated in float64 across chunks: a float64 copy of g would cost 20 times as much. A
        student may compute both without forming g (the MLP: outer-product norms)."""
        g = self.per_sample_grads(theta, x, t)
        if g.dtype == torch.float64:
            return (g * g).sum(dim=-1), g.sum(dim=1)
        return torch.einsum("rcp,rcp->rc", g, g).to(torch.float64), g.sum(dim=1).to(torch.float64)

    def batch_grad(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, *, out: torch.Tensor | None = None,
                   scale: float = 1.0) -> torch.Tensor:
        """Return `scale` times the minibatch gradient (mean over B of E1 gradients) `[R, P]`.

        `out` receives the result when given; fast paths apply `scale` (e.g. -gamma) to small
        per-sample factors before the outer products, so a scaled step costs no extra pass.
        """
        return into(self.per_sample_grads(theta, x, t).mean(dim=1) * scale, out)

    def sgd_step(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, gamma: float, *, out: torch.Tensor) -> torch.Tensor:
        """Write the plain SGD step theta - gamma * batch_grad(theta, x, t) into `out` `[R, P]` and return it."""
        return torch.add(theta, self.batch_grad(theta, x, t, scale=-gamma), out=out)

    @abc.abstractmethod
    def prob_jacobian(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Return J[n, k] = d q_theta,k(x_n) / d theta `[N, K, P]` for theta `[P]`, x `[N, d]` (DESIGN 2.5)."""

    @abc.abstractmethod
    def hessian(self, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Return the Hessian of the mean over N of E1 `[P, P]` for theta `[P]`, x `[N, d]`, t `[N, K]`."""

    @abc.abstractmethod
    def optimum(self, task: "Task") -> torch.Tensor:
        """Return theta* `[P]` with q_theta* = p, from the task's realizability hooks; ValueError if none."""

    # ------------------------------------------------------------------ declared structure
    def gauge_basis(self) -> np.ndarray:
        """Orthonormal basis `[P, m]` float64 of the directions that never change q (m = 0: none known)."""
        return np.zeros((self.num_params, 0))

    def feature_model(self) -> FeatureModel | None:
        """The logits as linear functions of fixed features (E11 closed forms), or None."""
        return None

    def identifiable(self, delta: torch.Tensor) -> torch.Tensor:
        """Return the part of parameter displacements `delta` `[..., P]` that changes the model.

        The softmax is unchanged along the gauge directions (`gauge_basis`): SGD never moves
        along them (DESIGN 2.5, "Gauge"). Distances to theta* and init perturbations are taken on
        what remains. Identity when there is no gauge.
        """
        N = self.gauge_basis()
        if N.shape[1] == 0:
            return delta
        Nt = torch.as_tensor(N, dtype=delta.dtype, device=delta.device)
        return delta - (delta @ Nt) @ Nt.T

    # ------------------------------------------------------------------ initial parameters
    @abc.abstractmethod
    def _random(self, streams: "Streams", scale: float) -> torch.Tensor:
        """Return one chain's random initial parameters `[P]`, drawn from that chain's streams only."""

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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r} P={self.num_params} {dtype_name(self.dtype)}>"
