"""Optimizers as update rules over the stacked chains (DESIGN 4): each registers itself.

An update rule keeps its per-chain state (tensors `[R, P]`, rows aligned as theta's: `engine.rows`)
and writes theta_{k+1} into a buffer:

    rule.start(theta)                                   allocate state for theta `[R, P]`
    rule.step(student, theta, x, t, gamma, out) -> out  one update of every chain
    rule.rate(active) -> float | Tensor `[P]`           its effective step per unit gamma, to first order

Every operation is element-wise or chain-local, so chain r's trajectory does not depend on R.
- "sgd": theta <- theta - gamma g (fused into the student's `sgd_step`); with heavy-ball momentum
  beta: v <- beta v + g, theta <- theta - gamma v.
- "adam" (Kingma and Ba 2015, as `torch.optim.Adam`): m <- beta1 m + (1 - beta1) g,
  v <- beta2 v + (1 - beta2) g^2, theta <- theta - (gamma / (1 - beta1^k)) m / (sqrt(v) /
  sqrt(1 - beta2^k) + eps); E21 predicts its stationary neighborhood.
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Protocol

import torch

from synthetic.registry import Registry

from .rows import rows_like

if TYPE_CHECKING:  # pragma: no cover
    from ..students import Student

__all__ = ["OPTIMIZERS", "SGD", "Adam", "Settings", "UpdateRule", "build_optimizer", "register_optimizer"]


class Settings(Protocol):
    """What an update rule reads from a run's configuration (`engine.RunConfig` has these fields)."""

    optimizer: str
    momentum: float
    beta1: float
    beta2: float
    eps: float


#: every registered update rule: name -> class with `from_config(config)`
OPTIMIZERS: Registry = Registry("optimizer")
register_optimizer = OPTIMIZERS


class UpdateRule(abc.ABC):
    """One optimizer step for R stacked chains; state is per chain."""

    name: str = ""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: "Settings") -> "UpdateRule":
        """The rule with the hyperparameters of `config`."""

    @abc.abstractmethod
    def start(self, theta: torch.Tensor) -> None:
        """Allocate the per-chain state for parameters `theta` `[R, P]`."""

    @abc.abstractmethod
    def step(self, student: "Student", theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, gamma: float,
             out: torch.Tensor) -> torch.Tensor:
        """Write theta_{k+1} `[R, P]` into `out` and return it (`theta` is not modified)."""

    def freeze(self, stopped: torch.Tensor) -> None:
        """Keep the state of `stopped` chains `[R]` bool as it is (they no longer move)."""

    def rate(self, active: torch.Tensor) -> float | torch.Tensor:
        """The last step's effective preconditioner per unit gamma near theta*, to first order: a
        scalar s (theta moves as theta - gamma s grad F) or a diagonal `[P]` (mean over the `active`
        chains `[R]` bool), for the loop's relaxation check (E21: mode i relaxes at gamma times the
        eigenvalues of P^1/2 H P^1/2)."""
        return 1.0


@register_optimizer("sgd")
class SGD(UpdateRule):
    """Stochastic gradient descent, with heavy-ball momentum beta (v = beta v + g, theta -= gamma v)."""

    name = "sgd"

    def __init__(self, momentum: float = 0.0) -> None:
        self.momentum = float(momentum)
        self.velocity: torch.Tensor | None = None
        self._grad: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: "Settings") -> "SGD":
        return cls(config.momentum)

    def start(self, theta: torch.Tensor) -> None:
        if self.momentum > 0.0:
            self.velocity, self._grad = rows_like(theta, 0.0), rows_like(theta)

    def rate(self, active: torch.Tensor) -> float:
        """Heavy-ball momentum: 1 / (1 - beta) to first order (E17 with gamma / (1 - beta))."""
        return 1.0 / (1.0 - self.momentum)

    def step(self, student: "Student", theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, gamma: float,
             out: torch.Tensor) -> torch.Tensor:
        if self.velocity is None:  # plain SGD: the student fuses its outer products into the update
            return student.sgd_step(theta, x, t, gamma, out=out)
        self.velocity.mul_(self.momentum).add_(student.batch_grad(theta, x, t, out=self._grad))  # v = beta v + g
        return torch.sub(theta, torch.mul(self.velocity, gamma, out=self._grad), out=out)  # theta - gamma v


@register_optimizer("adam")
class Adam(UpdateRule):
    """Adam with bias correction, per-chain moments, in the operation order of `torch.optim.Adam`."""

    name = "adam"

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = self.v = self._grad = self._denom = None
        self.k = 0

    @classmethod
    def from_config(cls, config: "Settings") -> "Adam":
        return cls(config.beta1, config.beta2, config.eps)

    def start(self, theta: torch.Tensor) -> None:
        self.m, self.v = rows_like(theta, 0.0), rows_like(theta, 0.0)
        self._grad, self._denom = rows_like(theta), rows_like(theta)
        self.k = 0

    def step(self, student: "Student", theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, gamma: float,
             out: torch.Tensor) -> torch.Tensor:
        g = student.batch_grad(theta, x, t, out=self._grad)
        self.k += 1
        self.m.lerp_(g, 1.0 - self.beta1)  # m = beta1 m + (1 - beta1) g, as torch.optim.Adam
        self.v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
        c1, c2 = 1.0 - self.beta1**self.k, 1.0 - self.beta2**self.k
        torch.div(self.v.sqrt(), c2**0.5, out=self._denom).add_(self.eps)
        out.copy_(theta)
        return out.addcdiv_(self.m, self._denom, value=-gamma / c1)

    def rate(self, active: torch.Tensor) -> torch.Tensor:
        """P = diag(1 / (sqrt(v_hat) + eps)) of the last step `[P]`, mean over the active chains (the
        bias-corrected m_hat averages past gradients with weights summing to 1: E21's first order)."""
        if self._denom is None or self.k == 0:
            raise ValueError("rate: Adam has not taken a step yet")
        inv = self._denom[active].reciprocal()
        return inv.mean(0) if len(inv) else torch.zeros(self._denom.shape[1], dtype=self._denom.dtype,
                                                        device=self._denom.device)


def build_optimizer(config: "Settings") -> UpdateRule:
    """The update rule named by `config` (`OPTIMIZERS`)."""
    name: Any = getattr(config, "optimizer", "sgd")
    return OPTIMIZERS.get(str(name)).obj.from_config(config)
