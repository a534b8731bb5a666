"""A task whose BCPs are a fixed random MLP: realizable by a student of the same architecture (DESIGN 3)."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import brentq

from . import validation
from .base import Network, Task, register_task

ACTIVATIONS = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}


def mlp_forward(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, activation: str) -> np.ndarray:
    """Return the MLP output `[N, out]`: h <- act(h W^T + b) for hidden layers, then h W^T + b.

    Args:
        layers: [(W [out, in], b [out]), ...], hidden layers first, output layer last.
        x: inputs `[N, d]`.
        activation: "tanh" or "relu".
    """
    act = ACTIVATIONS[validation.one_of("activation", activation, tuple(ACTIVATIONS))]
    h = x
    for W, b in layers[:-1]:
        h = act(h @ W.T + b)
    W, b = layers[-1]
    return h @ W.T + b


@register_task("teacher-net")
class TeacherNetworkTask(Task):
    """x ~ N(0, I_d); p(x) = softmax(beta g_omega(x)) for a fixed random MLP g_omega.

    omega is drawn once from `seed` at construction: every weight ~ N(0, gain^2 / fan_in)
    (gain 1 for tanh, sqrt(2) for relu) and every bias ~ N(0, 0.5^2). The inverse temperature
    beta sets H(Y|X) (beta = 0 gives log K; H decreases monotonically as beta grows). An MLP
    student of the same widths and activation is realizable, with theta* = the declared `network()`;
    a linear student is not. Use it for non-convex checks (T2/T4).

    Args:
        dim: d, input dimension.
        num_classes: K >= 2.
        widths: hidden-layer widths, e.g. (16,).
        activation: "tanh" or "relu".
        beta: inverse temperature, >= 0.
        seed: seed of omega (non-negative integer).
        name: the task's name.
    """

    def __init__(self, dim: int = 5, num_classes: int = 3, widths: tuple[int, ...] = (16,), activation: str = "tanh",
                 beta: float = 4.0, seed: int = 3, name: str = "teacher-net") -> None:
        self._dim = validation.positive_int("dim", dim)
        self._K = validation.positive_int("num_classes", num_classes, minimum=2)
        self.widths = tuple(validation.positive_int("widths", w) for w in widths)
        self.activation = validation.one_of("activation", activation, tuple(ACTIVATIONS))
        self.beta = validation.nonnegative("beta", beta)
        self.seed = validation.positive_int("seed", seed, minimum=0)
        self.name = str(name)
        rng = np.random.default_rng(self.seed)
        gain = 1.0 if self.activation == "tanh" else np.sqrt(2.0)
        sizes = (self._dim, *self.widths, self._K)
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            W = rng.standard_normal((fan_out, fan_in)) * gain / np.sqrt(fan_in)
            b = 0.5 * rng.standard_normal(fan_out)
            W.setflags(write=False)
            b.setflags(write=False)
            layers.append((W, b))
        self.layers: tuple[tuple[np.ndarray, np.ndarray], ...] = tuple(layers)

    @property
    def num_classes(self) -> int:
        return self._K

    @property
    def dim(self) -> int:
        return self._dim

    def network_logits(self, x: np.ndarray) -> np.ndarray:
        """Return g_omega(x) `[N, K]` (logits before the inverse temperature)."""
        return mlp_forward(list(self.layers), self._check_x(x), self.activation)

    def log_bcp(self, x: np.ndarray) -> np.ndarray:
        return self._normalise(self.beta * self.network_logits(x))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw x ~ N(0, I_d), then y ~ p(x) by inverse CDF with one uniform per sample."""
        n = validation.positive_int("n", n)
        x = rng.standard_normal((n, self._dim))
        u = rng.random((n, 1))
        y = np.minimum(np.sum(np.cumsum(self.bcp(x), axis=1) < u, axis=1), self._K - 1).astype(np.int64)
        return x, y

    def network(self) -> Network:
        """The realizability hook: omega with beta folded into the output layer, so that
        softmax(mlp_forward(network().layers, x, activation)) = p(x) exactly. Copies, float64."""
        out = [(W.copy(), b.copy()) for W, b in self.layers]
        W, b = out[-1]
        out[-1] = (self.beta * W, self.beta * b)
        return Network(tuple(out), self.activation)

    def logit_weights(self, features: str = "linear") -> np.ndarray:
        raise ValueError(
            f"task {self.name!r} is not realizable by a linear softmax student ({features} features): "
            "its logits are an MLP; use a student of the architecture of network()"
        )

    def population_moments(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self._dim), np.ones(self._dim)

    def class_gaussians(self) -> None:
        return None

    def with_entropy(self, target: float, n: int = 200_000, seed: int = 0) -> TeacherNetworkTask:
        """Return the same network with beta solved so that H(Y|X) = target (nats).

        H(beta) is estimated on one fixed Monte Carlo sample of n inputs (common random numbers,
        so it is smooth and decreasing in beta) and solved with `scipy.optimize.brentq`.

        Args:
            target: H(Y|X) in (0, log K).
        """
        target = validation.in_interval("target", target, 0.0, float(np.log(self._K)), closed=False)
        n = validation.positive_int("n", n)
        g = self.network_logits(np.random.default_rng(seed).standard_normal((n, self._dim)))

        def excess(beta: float) -> float:
            logp = self._normalise(beta * g)
            return float(np.mean(-np.sum(np.exp(logp) * logp, axis=1))) - target

        hi = 1.0
        while excess(hi) > 0:
            hi *= 2.0
            if hi > 1e6:
                raise ValueError(f"target={target} is below the reachable H(Y|X) of this network")
        beta = brentq(excess, 0.0, hi, xtol=1e-12)
        return self._replace(beta=beta)

    def _replace(self, **changes: Any) -> TeacherNetworkTask:
        args = dict(dim=self._dim, num_classes=self._K, widths=self.widths, activation=self.activation,
                    beta=self.beta, seed=self.seed, name=self.name)
        return TeacherNetworkTask(**{**args, **changes})
