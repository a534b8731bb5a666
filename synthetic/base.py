"""The task protocol: a generative model of (x, y) whose Bayes class probabilities are exact.

Shapes: `N` samples, `d` input dimensions, `K` classes. Arrays are numpy float64.
Subclasses implement `num_classes`, `dim`, `sample` and `log_bcp`, and where they can the declared
hooks: `logit_weights(features)` and `network()` (realizability: the weights of a student that
reproduces p exactly), `class_gaussians()` (quadrature) and `population_moments()`
(standardisation). Everything else is shared here. This module knows nothing of students: a student
reads the realizability hooks and builds its own theta* from them (`bkd_theory.students`).
"""
from __future__ import annotations

import abc
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_softmax

from . import quadrature, validation
from .registry import Registry

#: every task preset by name; presets register themselves with `@register_task("name")` on a
#: zero-argument factory. `make_task`, the CLI and the contract tests read it.
TASKS: Registry = Registry("task")
register_task = TASKS

METHODS = ("auto", "quadrature", "monte-carlo")
#: Gauss-Hermite nodes per dimension of the span rule, by the span's dimension r (its error, the
#: change from 3/4 as many nodes, is <= 1e-9 relative for r <= 2 and ~2e-5 for r = 4 on the presets)
SPAN_NODES = {1: 200, 2: 128, 3: 64, 4: 32}


@dataclass(frozen=True)
class Estimate:
    """A number with its standard error.

    Attributes:
        value: the estimate.
        se: its standard error for Monte Carlo; for quadrature, an estimate of the numerical error
            (~1e-12, effectively exact).
        method: how it was obtained, e.g. "quadrature (...)", "monte carlo (n=200000, seed=0)".
    """

    value: float
    se: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "se": self.se, "method": self.method}


def bcp_calibration(p: np.ndarray, y: np.ndarray, bins: int = 10, min_count: int = 30) -> dict[str, Any]:
    """Compare empirical class frequencies with the mean predicted probability, bin by bin.

    For each class k, samples are binned on p_k(x) (equal-width bins on [0, 1]). If p is the true
    BCP, then given the x's, 1{y = k} ~ Bernoulli(p_k(x)) independently, so in a bin B
    z = (sum_B 1{y=k} - sum_B p_k) / sqrt(sum_B p_k (1 - p_k)) is approximately N(0, 1).

    Args:
        p: predicted probabilities `[N, K]`.
        y: labels `[N]` drawn from the true model.
        bins: bins per class.
        min_count: bins with fewer samples (or zero variance) are skipped.

    Returns:
        {"max_abs_z", "cells" (number of bins used), "z" `[cells]`, "freq", "mean_p", "count"}.
    """
    p = validation.finite_array("p", p, ndim=2)
    y = np.asarray(y)
    bins = validation.positive_int("bins", bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    z, freq, mean_p, count = [], [], [], []
    for k in range(p.shape[1]):
        idx = np.clip(np.digitize(p[:, k], edges) - 1, 0, bins - 1)
        hit = (y == k).astype(np.float64)
        for b in range(bins):
            sel = idx == b
            m = int(sel.sum())
            var = float(np.sum(p[sel, k] * (1.0 - p[sel, k])))
            if m < min_count or var <= 0.0:
                continue
            z.append((hit[sel].sum() - p[sel, k].sum()) / np.sqrt(var))
            freq.append(hit[sel].mean())
            mean_p.append(p[sel, k].mean())
            count.append(m)
    z_arr = np.asarray(z)
    return {"max_abs_z": float(np.max(np.abs(z_arr))) if len(z_arr) else 0.0, "cells": len(z_arr), "z": z_arr,
            "freq": np.asarray(freq), "mean_p": np.asarray(mean_p), "count": np.asarray(count)}


def as_generator(rng: Any, name: str = "rng") -> np.random.Generator:
    """Return `rng` as a numpy Generator: a Generator is returned as is, a non-negative int seeds one."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ValueError(f"{name} must be a numpy Generator or a non-negative integer seed, got {rng!r}")


@dataclass(frozen=True)
class Network:
    """A declared network whose softmax is the task's BCP exactly (the `Task.network()` hook).

    Attributes:
        layers: [(W `[out, in]`, b `[out]`), ...], hidden layers first, output layer last, float64.
        activation: the hidden activation's name ("tanh", "relu", ...).
    """

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    activation: str

    @property
    def widths(self) -> tuple[int, ...]:
        """Hidden-layer widths."""
        return tuple(W.shape[0] for W, _ in self.layers[:-1])


class Task(abc.ABC):
    """A synthetic classification task with exact BCPs p(x) = P(y | x) (DESIGN 2.1, 3).

    Subclasses implement `num_classes`, `dim`, `sample(n, rng)` and `log_bcp(x)`; the rest has
    defaults. `sample` accepts a numpy Generator or an integer seed in every subclass (the base
    wraps the subclass's method). Results of `bayes_accuracy`, `conditional_entropy` and
    `describe` are cached per instance (tasks are immutable: their arrays are read-only).
    """

    #: short name used on the command line ("paper", "triangle", ...)
    name: str = "task"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("sample")
        if own is not None and not getattr(own, "_checks_rng", False):
            @functools.wraps(own)
            def sample(self: "Task", n: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
                return own(self, validation.positive_int("n", n), as_generator(rng))

            sample._checks_rng = True  # type: ignore[attr-defined]
            cls.sample = sample  # type: ignore[method-assign]

    @property
    @abc.abstractmethod
    def num_classes(self) -> int:
        """K, the number of classes."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """d, the input dimension."""

    @abc.abstractmethod
    def sample(self, n: int, rng: np.random.Generator | int) -> tuple[np.ndarray, np.ndarray]:
        """Draw n i.i.d. pairs. Returns x `[n, d]` float64 and y `[n]` int64 in {0..K-1}."""

    @abc.abstractmethod
    def log_bcp(self, x: np.ndarray) -> np.ndarray:
        """Return log p(x) `[N, K]`, computed stably in log space."""

    def bcp(self, x: np.ndarray) -> np.ndarray:
        """Return the Bayes class probabilities p(x) `[N, K]` (rows on the simplex)."""
        return np.exp(self.log_bcp(x))

    # ------------------------------------------------------------------ declared hooks
    def logit_weights(self, features: str = "linear") -> np.ndarray:
        """Realizability hook: W `[K, F+1]` with log p(x) = log_softmax(W (phi(x), 1)) (bias last).

        Any gauge (rows may share a common shift). `features` is "linear" or "quadratic"
        (`synthetic.features`). Raises ValueError when no such W exists.
        """
        raise ValueError(f"task {self.name!r} is not realizable by a linear softmax student with {features} features")

    def network(self) -> Network:
        """Realizability hook: a network whose softmax is p(x) exactly; ValueError when none is declared."""
        raise ValueError(f"task {self.name!r} declares no network that reproduces its BCPs")

    def class_gaussians(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Return (priors [K], means [K, d], variances [K, d]) if x | y=k ~ N(mu_k, diag v_k), else None."""
        return None

    def population_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the population mean m `[d]` and per-coordinate standard deviation s `[d]` of x."""
        gauss = self.class_gaussians()
        if gauss is None:
            raise NotImplementedError(f"{type(self).__name__} does not know its population moments")
        pi, mu, v = gauss
        m = pi @ mu
        return m, np.sqrt(pi @ (v + mu**2) - m**2)

    # ------------------------------------------------------------------ derived
    def span_rule(self, nodes: int | None = None) -> "quadrature.SpanRule | None":
        """Gauss-Hermite nodes on the span of the logit differences (`quadrature.span_rule`), when the
        classes are Gaussian with one shared diagonal covariance and the logits are linear; else None.

        Args:
            nodes: nodes per dimension (default `SPAN_NODES` by the span's dimension; None there
                when the span has more than 4 dimensions).
        """
        gauss = self.class_gaussians()
        if gauss is None or not np.all(gauss[2] == gauss[2][0]):
            return None
        try:
            W = self.logit_weights("linear")
        except ValueError:
            return None
        r = int(np.linalg.matrix_rank(W[:-1, :-1] - W[-1, :-1]))
        n = SPAN_NODES.get(r) if nodes is None else validation.positive_int("nodes", nodes, minimum=2)
        if n is None:
            return None
        return self._cached(("span_rule", n), lambda: quadrature.span_rule(gauss[0], gauss[1], gauss[2][0], W, n))

    def _quadrature_ok(self, method: str) -> bool:
        method = validation.one_of("method", method, METHODS)
        ok = self.class_gaussians() is not None and self.dim <= quadrature.MAX_DIM
        if method == "quadrature" and not ok:
            raise ValueError(f"method='quadrature' needs Gaussian classes and d <= {quadrature.MAX_DIM} (task {self.name!r})")
        return ok and method != "monte-carlo"

    def _monte_carlo(self, stat: str, n: int, seed: int) -> Estimate:
        n = validation.positive_int("n", n)
        x, _ = self.sample(n, np.random.default_rng(seed))
        logp = self.log_bcp(x)
        f = np.exp(logp).max(axis=1) if stat == "accuracy" else -np.sum(np.exp(logp) * logp, axis=1)
        return Estimate(float(f.mean()), float(f.std(ddof=1) / np.sqrt(n)), f"monte carlo (n={n}, seed={seed})")

    def _cached(self, key: tuple, compute):
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    def bayes_accuracy(self, method: str = "auto", n: int = 200_000, seed: int = 0) -> Estimate:
        """Return E_x max_k p_k(x) (DESIGN 2.1).

        Args:
            method: "quadrature" (exact inner integral between decision boundaries and adaptive outer
                one; Gaussian classes, d <= 2, quadratic logits), "monte-carlo" (the mean of
                max_k p_k over n sampled x, with its SE), or "auto" (quadrature where possible, then
                orthant probabilities for a shared covariance with linear logits, else Monte Carlo).
            n: Monte Carlo sample size.
            seed: Monte Carlo seed.
        """
        def compute() -> Estimate:
            if self._quadrature_ok(method):
                try:
                    W = self.logit_weights("quadratic")
                except ValueError:
                    W = None
                if W is not None:
                    value, err = quadrature.bayes_accuracy_quadratic(*self.class_gaussians(), W)
                    return Estimate(value, err, "quadrature (exact between decision boundaries, adaptive outer)")
                if method == "quadrature":
                    raise ValueError(f"method='quadrature' needs quadratic logits (task {self.name!r})")
            if method != "monte-carlo" and self.span_rule(nodes=2) is not None:
                pi, mu, v = self.class_gaussians()
                value, err = quadrature.orthant_accuracy(pi, mu, v[0], self.logit_weights("linear"), abseps=1e-7)
                return Estimate(float(value), float(err), "multivariate normal orthant probabilities (Genz, abseps 1e-7)")
            return self._monte_carlo("accuracy", n, seed)

        return self._cached(("accuracy", method, n, seed), compute)

    def conditional_entropy(self, method: str = "auto", n: int = 200_000, seed: int = 0) -> Estimate:
        """Return H(Y|X) = E_x[-sum_k p_k log p_k] in nats (DESIGN 2.1); F* of Prop. 1.

        Args:
            method: "quadrature" (tensor Gauss-Hermite per class, 200 nodes per dimension; the error
                estimate is the change from 100 nodes), "monte-carlo" (n sampled x, with SE), or
                "auto" (quadrature where the dimension allows, then the span rule, else Monte Carlo).
            n: Monte Carlo sample size.
            seed: Monte Carlo seed.
        """
        def compute() -> Estimate:
            if self._quadrature_ok(method):
                def f(x: np.ndarray) -> np.ndarray:
                    logp = self.log_bcp(x)
                    return -np.sum(np.exp(logp) * logp, axis=1)

                fine = quadrature.gauss_hermite_mean(f, *self.class_gaussians(), nodes=200)
                coarse = quadrature.gauss_hermite_mean(f, *self.class_gaussians(), nodes=100)
                return Estimate(float(fine), float(abs(fine - coarse)), "quadrature (Gauss-Hermite, 200 nodes per dimension)")
            fine_rule = self.span_rule() if method != "monte-carlo" else None
            if fine_rule is not None:
                coarse_rule = self.span_rule(nodes=max(2, (3 * fine_rule.nodes) // 4))
                fine, coarse = (float(r.w @ -np.sum(np.exp(lp) * lp, axis=1))
                                for r, lp in ((r, self.log_bcp(r.x)) for r in (fine_rule, coarse_rule)))
                return Estimate(fine, abs(fine - coarse), f"Gauss-Hermite on the span of the logit differences "
                                f"({fine_rule.nodes} nodes per dimension; error: change from {coarse_rule.nodes})")
            return self._monte_carlo("entropy", n, seed)

        return self._cached(("entropy", method, n, seed), compute)

    def check_bcp(self, n: int = 20_000, rng: np.random.Generator | int | None = None, bins: int = 10) -> dict[str, Any]:
        """Self-check (STYLE 13): sample (x, y) and compare binned class frequencies with mean p(x).

        Returns the report of `bcp_calibration`; `max_abs_z` above ~4 means p(x) is not the law
        of y given x.
        """
        n = validation.positive_int("n", n)
        x, y = self.sample(n, as_generator(0 if rng is None else rng))
        return bcp_calibration(self.bcp(x), y, bins=bins)

    def describe(self, n: int = 200_000, seed: int = 0) -> dict[str, Any]:
        """Return the name, K, d, the Bayes accuracy and H(Y|X) (each with SE and method), and the
        realizability hooks the task declares. The students' conditioning at theta* is
        `bkd_theory.theory.conditioning(task, student)`."""
        def compute() -> dict[str, Any]:
            realizable = []
            for kind in ("linear", "quadratic"):
                try:
                    self.logit_weights(kind)
                    realizable.append(f"linear student, {kind} features")
                except ValueError:
                    pass
            try:
                net = self.network()
                realizable.append(f"network {'x'.join(map(str, net.widths))} {net.activation}")
            except ValueError:
                pass
            return {
                "name": self.name, "K": self.num_classes, "d": self.dim,
                "bayes_accuracy": self.bayes_accuracy(n=n, seed=seed).to_dict(),
                "conditional_entropy": self.conditional_entropy(n=n, seed=seed).to_dict(),
                "realizable_by": realizable,
            }

        return self._cached(("describe", n, seed), compute)

    # ------------------------------------------------------------------ helpers
    def _check_x(self, x: np.ndarray) -> np.ndarray:
        return validation.finite_array("x", x, shape=(None, self.dim))

    @staticmethod
    def _normalise(logits: np.ndarray) -> np.ndarray:
        return log_softmax(logits, axis=-1)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} K={self.num_classes} d={self.dim}>"
