"""Optimizers as update rules over the stacked chains (DESIGN 4): each registers itself.

An update rule keeps its per-chain state (tensors `[R, P]`) and writes theta_{k+1} into a buffer:

    rule.start(theta)                                   allocate state for theta `[R, P]`
    rule.step(student, theta, x, t, gamma, out) -> out  one update of every chain

Every operation is element-wise or chain-local, so chain r's trajectory does not depend on R.
- "sgd": theta <- theta - gamma g (fused into the student's `sgd_step`); with heavy-ball momentum
  beta: v <- beta v + g, theta <- theta - gamma v.
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import torch

from synthetic.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from ..students import Student
    from .config import RunConfig

__all__ = ["OPTIMIZERS", "SGD", "UpdateRule", "build_optimizer", "register_optimizer"]

#: every registered update rule: name -> class with `from_config(config)`
OPTIMIZERS: Registry = Registry("optimizer")
register_optimizer = OPTIMIZERS


class UpdateRule(abc.ABC):
    """One optimizer step for R stacked chains; state is per chain."""

    name: str = ""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: "RunConfig") -> "UpdateRule":
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


@register_optimizer("sgd")
class SGD(UpdateRule):
    """Stochastic gradient descent, with heavy-ball momentum beta (v = beta v + g, theta -= gamma v)."""

    name = "sgd"

    def __init__(self, momentum: float = 0.0) -> None:
        self.momentum = float(momentum)
        self.velocity: torch.Tensor | None = None
        self._grad: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: "RunConfig") -> "SGD":
        return cls(config.momentum)

    def start(self, theta: torch.Tensor) -> None:
        if self.momentum > 0.0:
            self.velocity, self._grad = torch.zeros_like(theta), torch.empty_like(theta)

    def step(self, student: "Student", theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor, gamma: float,
             out: torch.Tensor) -> torch.Tensor:
        if self.velocity is None:  # plain SGD: the student fuses its outer products into the update
            return student.sgd_step(theta, x, t, gamma, out=out)
        self.velocity.mul_(self.momentum).add_(student.batch_grad(theta, x, t, out=self._grad))  # v = beta v + g
        return torch.sub(theta, torch.mul(self.velocity, gamma, out=self._grad), out=out)  # theta - gamma v


def build_optimizer(config: "RunConfig") -> UpdateRule:
    """The update rule named by `config` (`OPTIMIZERS`)."""
    name: Any = getattr(config, "optimizer", "sgd")
    return OPTIMIZERS.get(str(name)).obj.from_config(config)
