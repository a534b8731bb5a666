"""The per-sample loss a student trains on, and its logit residual: one definition for every student.

Two kinds of targets reach a student:
- a tensor t `[..., K]`: the cross-entropy of DESIGN (E1), l = -sum_k t_k log q_k, with logit
  residual dl/df = (sum_k t_k) q - t (E11);
- `KDTargets(hard, soft, T)`: the Hinton loss at student temperature T (E22),

      l = -sum_k hard_k log q_k - T^2 sum_k soft_k log softmax(f / T)_k,
      dl/df = (sum hard) q - hard + T ((sum soft) softmax(f / T) - soft),

  with hard = (1 - lam) e_y and soft = lam t^(T), t^(T) = softmax(log t / T) the teacher's target
  at temperature T (`temper`). So dl/df = (1 - lam)(q - e_y) + lam T (softmax(f / T) - t^(T)).
  At T = 1 it is E1 with the target hard + soft = (1 - lam) e_y + lam t (the KD mixture, E20).

`logit_residual` is the only place the residual is written: the linear student's closed form, the
MLP's hand-written backward pass and the `torch.func` paths (vector-Jacobian products of the logits)
all call it. `loss` is the matching per-sample value (the autograd oracle of the tests).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["KDTargets", "as_targets", "cat_targets", "logit_residual", "loss", "temper"]


@dataclass(frozen=True)
class KDTargets:
    """Targets of the Hinton loss (module docstring), stacked like a target tensor.

    Attributes:
        hard: (1 - lam) e_y `[..., K]`. soft: lam t^(T) `[..., K]`. T: the student temperature (> 0).
    Indexing (`targets[i]`) indexes both tensors, so a page of targets `[L, R, b, K]` yields the
    step's `[R, b, K]` like a plain tensor.
    """

    hard: torch.Tensor
    soft: torch.Tensor
    T: float

    def __post_init__(self) -> None:
        if self.hard.shape != self.soft.shape:
            raise ValueError(f"hard and soft targets must have the same shape, got {tuple(self.hard.shape)} "
                             f"and {tuple(self.soft.shape)}")
        if not (isinstance(self.T, (int, float)) and math.isfinite(self.T) and self.T > 0):
            raise ValueError(f"kd_temperature must be finite and > 0, got {self.T!r}")

    def __getitem__(self, i: Any) -> "KDTargets":
        return KDTargets(self.hard[i], self.soft[i], self.T)

    @property
    def shape(self) -> torch.Size:
        return self.hard.shape

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "KDTargets":
        """The same targets in `dtype` and on `device` (None: as they are)."""
        return KDTargets(torch.as_tensor(self.hard, dtype=dtype, device=device),
                         torch.as_tensor(self.soft, dtype=dtype, device=device), self.T)


def cat_targets(parts: list[Any], dim: int) -> torch.Tensor | KDTargets:
    """Target tensors, or `KDTargets` of one temperature, concatenated along `dim` (`torch.cat`)."""
    if all(isinstance(p, KDTargets) for p in parts) and len({p.T for p in parts}) == 1:
        return KDTargets(torch.cat([p.hard for p in parts], dim), torch.cat([p.soft for p in parts], dim), parts[0].T)
    if any(isinstance(p, KDTargets) for p in parts):
        raise ValueError("cat_targets: KD targets join only with KD targets of the same temperature")
    return torch.cat(parts, dim)


def as_targets(t: Any, dtype: torch.dtype) -> torch.Tensor | KDTargets:
    """`t` as targets of `dtype`: a tensor (E1) or `KDTargets` (E22)."""
    return t.to(dtype) if isinstance(t, KDTargets) else torch.as_tensor(t, dtype=dtype)


def logit_residual(logits: torch.Tensor, t: Any) -> torch.Tensor:
    """Return dl/df `[..., K]` for logits f `[..., K]` and targets t (module docstring; E11, E22).

    For a tensor t this is (sum_k t_k) softmax(f) - t, in the operation order the students have
    always used (so a run without a temperature is bit for bit what it was).
    """
    t = as_targets(t, logits.dtype)
    if not isinstance(t, KDTargets):
        return t.sum(dim=-1, keepdim=True) * torch.softmax(logits, dim=-1) - t
    hard = t.hard.sum(dim=-1, keepdim=True) * torch.softmax(logits, dim=-1) - t.hard
    soft = t.soft.sum(dim=-1, keepdim=True) * torch.softmax(logits / t.T, dim=-1) - t.soft
    return hard + t.T * soft


def loss(logits: torch.Tensor, t: Any) -> torch.Tensor:
    """Return the per-sample loss `[...]` (nats) for logits `[..., K]` (E1, or E22's Hinton loss)."""
    t = as_targets(t, logits.dtype)
    if not isinstance(t, KDTargets):
        return -(t * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
    hard = -(t.hard * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
    return hard - t.T**2 * (t.soft * torch.log_softmax(logits / t.T, dim=-1)).sum(dim=-1)


def temper(t: np.ndarray, T: float) -> np.ndarray:
    """Return t^(T) = softmax(log t / T) row-wise `[..., K]` for teacher targets t >= 0 (E22).

    A zero entry stays zero (log 0 = -inf). ValueError when an entry is negative (additive noise
    leaves the simplex, and log t is then undefined) or a row is all zero.
    """
    t = np.asarray(t, dtype=np.float64)
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise ValueError("kd_temperature needs teacher targets t >= 0 (softmax(log t / T)); this teacher draws "
                         "negative or non-finite entries (e.g. additive noise): use a teacher on the simplex")
    with np.errstate(divide="ignore"):
        z = np.log(t) / float(T)
    top = z.max(axis=-1, keepdims=True)
    if not np.all(np.isfinite(top)):
        raise ValueError("kd_temperature needs teacher targets with a positive entry in every row")
    e = np.exp(z - top)
    return e / e.sum(axis=-1, keepdims=True)
