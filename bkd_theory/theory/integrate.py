"""How the theory takes expectations over x, and the error bar of every prediction (DESIGN 2.9, 3).

An `Integrator` holds weighted nodes, E_x f ~ sum_n w_n f(node n), and a second look at them for
the error bar:
- quadrature (Gaussian classes with a shared diagonal covariance and linear logits,
  `Task.span_rule`): Gauss-Hermite nodes on the span of the logit differences, exact for any
  function of p(x) times a polynomial of degree <= 2 in x (with the residual covariance of x given
  a node), and for every integrand when the span is the whole space; the error of a prediction is
  its change from a rule with 3/4 as many nodes per dimension;
- Monte Carlo elsewhere: i.i.d. task inputs from `rng.stream(seed, "theory.inputs", key)`; the SE of
  any prediction (linear in the nodes or not: eigenvalues, Lyapunov traces) is the batch-means SE
  over `BATCHES` equal batches of the same inputs. Above `BATCHES * CHUNK` inputs the nodes are never
  all in memory: each batch is drawn `CHUNK` inputs at a time (chunk j from
  `rng.stream(seed, "theory.inputs", key, j)`) and its moments are the size-weighted mean of its
  chunks' (`Chunks`), so memory stays bounded at any n; smaller sizes are drawn at once, as before.

`Integrator.evaluate(moments, derived)` is the one way predictions are made: `moments(nodes)`
returns weighted means over the nodes (linear in the weights: scalars and matrices), `derived`
turns moments into predictions (eigenvalues, ratios, Lyapunov traces). Quadrature evaluates both
on the fine and the coarse rule; Monte Carlo evaluates the moments once per batch (one pass over
the inputs), averages them for the value and takes the batch-means SE of the derived quantities.
`Integrator.estimate(fn)` does the same for one scalar function of the nodes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from synthetic import validation
from synthetic.base import Estimate

from .. import rng as rng_mod
from ..stats import mean_se

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..students import Student
    from ..teachers import Teacher

BATCHES = 8
#: default Monte Carlo sizes: a pilot of MC_PILOT inputs sizes the sample for a relative SE of
#: TARGET_RSE on sigma^2, within [MC_PILOT, MC_MAX] (MC_MAX_JACOBIAN for students without a feature
#: model, whose per-input Jacobians cost ~25 us each)
MC_PILOT, MC_MAX, MC_MAX_JACOBIAN, TARGET_RSE = 2**14, 2**20, 2**17, 1e-3
#: Monte Carlo inputs held in memory at once; larger sizes are drawn and integrated in chunks
CHUNK = 2**17


@dataclass(frozen=True)
class Nodes:
    """Weighted points for expectations over x.

    Attributes:
        x: inputs `[N, d]` (for quadrature the conditional means E[x | node]). p: BCPs at x `[N, K]`.
        w: weights `[N]` summing to 1. resid: Cov(x | node) `[d, d]` for quadrature over a span
            smaller than the input space, else None (exact points). y: labels drawn with x (Monte
            Carlo only). method: a sentence.
        cls, u, centres, basis: the quadrature's reduced coordinates (x = centres[cls] + u basis^T).
    """

    x: np.ndarray = field(repr=False)
    p: np.ndarray = field(repr=False)
    w: np.ndarray = field(repr=False)
    resid: np.ndarray | None = field(repr=False)
    method: str
    y: np.ndarray | None = field(default=None, repr=False)
    cls: np.ndarray | None = field(default=None, repr=False)
    u: np.ndarray | None = field(default=None, repr=False)
    centres: np.ndarray | None = field(default=None, repr=False)
    basis: np.ndarray | None = field(default=None, repr=False)

    @property
    def exact(self) -> bool:
        """The nodes are points (no residual covariance): any function of x can be integrated."""
        return self.resid is None

    @property
    def iid(self) -> bool:
        """Monte Carlo nodes: i.i.d. task inputs with equal weights (their labels are kept)."""
        return self.y is not None

    def __len__(self) -> int:
        return len(self.w)

    def subset(self, idx: np.ndarray) -> Nodes:
        """The nodes `idx` with their weights renormalised."""
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        w = self.w[idx]
        return replace(self, x=self.x[idx], p=self.p[idx], w=w / w.sum(), y=pick(self.y), cls=pick(self.cls),
                       u=pick(self.u))

    def mean(self, values: np.ndarray) -> Any:
        """sum_n w_n values_n over the first axis."""
        return np.tensordot(self.w, values, axes=(0, 0))


def _split(n: int, parts: int) -> list[int]:
    """Sizes of `np.array_split(range(n), parts)`, without the range."""
    return [n // parts + (i < n % parts) for i in range(parts)]


@dataclass(frozen=True)
class Chunks:
    """Monte Carlo inputs too many to hold at once: batch b has `batches[b]` inputs in chunks of at
    most `CHUNK`; chunk j (counted over all batches) is drawn from `rng.stream(seed,
    "theory.inputs", key, j)` when it is used."""

    task: Any = field(repr=False)
    seed: int
    key: int
    batches: tuple[int, ...]
    method: str

    @classmethod
    def plan(cls, task: "Task", n: int, seed: int, key: int, method: str) -> "Chunks":
        """`n` inputs in `BATCHES` near-equal batches."""
        return cls(task, seed, key, tuple(_split(n, BATCHES)), method)

    @property
    def size(self) -> int:
        return int(sum(self.batches))

    def draw(self, j: int, m: int) -> Nodes:
        """Chunk j: m i.i.d. inputs with their labels."""
        x, y = self.task.sample(m, rng_mod.stream(self.seed, "theory.inputs", self.key, j))
        return Nodes(x, np.exp(self.task.log_bcp(x)), np.full(m, 1.0 / m), None, self.method, y=y)

    def chunks(self) -> Any:
        """Yield (batch, the chunk's share of its batch, the chunk's nodes), one chunk in memory at a time."""
        j = 0
        for b, m in enumerate(self.batches):
            for c in _split(m, -(-m // CHUNK)):
                yield b, c / m, self.draw(j, c)
                j += 1

    def moments(self, moments: Callable[[Nodes], dict[str, Any]]) -> tuple[list[dict[str, Any]], np.ndarray]:
        """(per batch the moments, each the share-weighted sum over its chunks; the batches' shares of all)."""
        parts: list[dict[str, Any]] = [{} for _ in self.batches]
        for b, share, nodes in self.chunks():
            for k, v in moments(nodes).items():
                parts[b][k] = parts[b].get(k, 0.0) + share * v
        return parts, np.array(self.batches, dtype=float) / self.size


@dataclass(frozen=True)
class Integrator:
    """Nodes and the second look that gives every prediction its error bar (module docstring).

    Attributes:
        nodes: all nodes (a chunked Monte Carlo integrator: its first chunk only; use `size`,
            `mean` and `evaluate`). coarse: the coarser quadrature rule (quadrature), else None.
        batches: index arrays of the Monte Carlo batches, else None. kind: "quadrature" or "monte carlo".
        chunks: the chunk plan of a Monte Carlo integrator too large to hold (`Chunks`), else None.
    """

    nodes: Nodes
    coarse: Nodes | None
    batches: tuple[np.ndarray, ...] | None
    kind: str
    chunks: Chunks | None = None

    @property
    def method(self) -> str:
        return self.nodes.method

    @property
    def size(self) -> int:
        """The number of nodes (all chunks)."""
        return len(self.nodes) if self.chunks is None else self.chunks.size

    def mean(self, fn: Callable[[Nodes], np.ndarray]) -> Any:
        """sum_n w_n fn(nodes)_n over all nodes (chunk by chunk for a chunked integrator)."""
        if self.chunks is None:
            return self.nodes.mean(fn(self.nodes))
        total = self.size
        return sum(len(nodes) / total * nodes.mean(fn(nodes)) for _, _, nodes in self.chunks.chunks())

    def evaluate(self, moments: Callable[[Nodes], dict[str, Any]],
                 derived: Callable[[dict[str, Any]], dict[str, float]]) -> tuple[dict[str, Estimate], dict[str, Any]]:
        """Predictions `derived(moments(nodes))` with their error bars, and the moments of all nodes.

        Returns:
            ({name: Estimate}, the moments over all nodes). A prediction that is NaN (undefined) is left out.
        """
        if self.coarse is not None:
            full, coarse = moments(self.nodes), moments(self.coarse)
            value, other = derived(full), derived(coarse)
            err = {k: abs(value[k] - other.get(k, math.nan)) for k in value}
        else:
            if self.chunks is not None:  # one chunk in memory at a time
                parts, sizes = self.chunks.moments(moments)
            else:
                parts = [moments(self.nodes.subset(b)) for b in self.batches]
                sizes = np.array([len(b) for b in self.batches], dtype=float) / len(self.nodes)
            full = {k: sum(s * m[k] for s, m in zip(sizes, parts)) for k in parts[0]}
            value, each = derived(full), [derived(m) for m in parts]
            err = {k: mean_se([d.get(k, math.nan) for d in each])[1] for k in value}
        out = {k: Estimate(float(v), float(err[k]), self.method) for k, v in value.items() if np.isfinite(v)}
        return out, full

    def error(self, fn: Callable[[Nodes], Any], value: Any = None) -> Any:
        """The error bar of a function of the nodes that is not a weighted mean (e.g. a solve on the
        per-node factors): |fn(fine) - fn(coarse)|, or the batch-means SE of fn over the batches."""
        if self.chunks is not None:
            raise ValueError("a chunked Monte Carlo integrator has no error() of a non-linear function of all nodes; "
                             "use at most BATCHES * CHUNK inputs")
        value = fn(self.nodes) if value is None else value
        if self.coarse is not None:
            return np.abs(np.asarray(fn(self.coarse), dtype=float) - np.asarray(value, dtype=float))
        parts = np.stack([np.asarray(fn(self.nodes.subset(b)), dtype=float) for b in self.batches])
        return mean_se(parts, axis=0)[1]

    def estimate(self, fn: Callable[[Nodes], float], method: str | None = None) -> Estimate:
        """The weighted mean `fn(nodes)` (a scalar linear in the node weights) with its error bar."""
        est, _ = self.evaluate(lambda nodes: {"v": float(fn(nodes))}, lambda m: {"v": m["v"]})
        return Estimate(est["v"].value, est["v"].se, method or self.method)


def quadrature(task: "Task") -> Integrator | None:
    """The span-rule integrator of `task`, or None when the task has no span rule."""
    fine = task.span_rule()
    if fine is None:
        return None
    coarse = task.span_rule(nodes=max(2, (3 * fine.nodes) // 4))

    def nodes(rule: Any) -> Nodes:
        method = (f"Gauss-Hermite on the span of the logit differences ({rule.nodes} nodes per dimension, "
                  f"{len(rule.w)} nodes; error: the change from {coarse.nodes})")
        resid = None if rule.exact_points else rule.resid
        w = rule.w / rule.w.sum()
        return Nodes(rule.x, np.exp(task.log_bcp(rule.x)), w, resid, method, cls=rule.cls, u=rule.u,
                     centres=rule.centres, basis=rule.basis)

    return Integrator(nodes(fine), nodes(coarse), None, "quadrature")


def monte_carlo(task: "Task", n: int, seed: int, key: int = 0) -> Integrator:
    """n i.i.d. inputs of `task` (with labels) from `rng.stream(seed, "theory.inputs", key)`, in BATCHES batches."""
    n = validation.positive_int("n_mc", n, minimum=2 * BATCHES)
    method = f"Monte Carlo over x (n={n}, seed={seed}); SE: batch means over {BATCHES} batches"
    if n > BATCHES * CHUNK:  # drawn and integrated CHUNK inputs at a time
        plan = Chunks.plan(task, n, seed, key, method + f", drawn in chunks of {CHUNK}")
        return Integrator(plan.draw(0, min(CHUNK, plan.batches[0])), None, None, "monte carlo", chunks=plan)
    x, y = task.sample(n, rng_mod.stream(seed, "theory.inputs", key))
    nodes = Nodes(x, np.exp(task.log_bcp(x)), np.full(n, 1.0 / n), None, method, y=y)
    return Integrator(nodes, None, tuple(np.array_split(np.arange(n), BATCHES)), "monte carlo")


def mc_size(pilot_values: np.ndarray, target: float = TARGET_RSE, cap: int = MC_MAX) -> int:
    """The Monte Carlo size for relative SE `target` of the mean of i.i.d. values like `pilot_values`."""
    v = np.asarray(pilot_values, dtype=float)
    m = abs(float(v.mean()))
    if m == 0.0:
        return len(v)
    need = int(math.ceil(float(v.var(ddof=1)) / (target * m) ** 2))
    return int(min(max(need, len(v)), cap))


def integrator(task: "Task", student: "Student", teacher: "Teacher", *, n_mc: int | None = None, seed: int = 0,
               method: str = "auto", pilot: Callable[[Nodes], np.ndarray] | None = None,
               cap: int | None = None) -> Integrator:
    """The integrator for (task, student, teacher).

    Quadrature when the task has a span rule and the integrands are covered by it: the student's
    logits are linear in linear features, or the span is the whole input space; and the teacher
    reads x only through p (`needs_x` False). Otherwise Monte Carlo with `n_mc` inputs, or, when
    `n_mc` is None, with a size chosen from a pilot of `MC_PILOT` inputs (`pilot(nodes)` gives the
    per-input values of the main quantity, sigma^2) for a relative SE of `TARGET_RSE`, at most `cap`
    (default `MC_MAX`, or `MC_MAX_JACOBIAN` for a student without a feature model).

    Args:
        method: "auto", "quadrature" (ValueError when not applicable) or "monte-carlo".
    """
    method = validation.one_of("method", method, ("auto", "quadrature", "monte-carlo"))
    quad = None if method == "monte-carlo" else quadrature(task)
    fm = student.feature_model()
    if quad is not None and not teacher.needs_x and (quad.nodes.exact or (fm is not None and fm.kind == "linear")):
        return quad
    if method == "quadrature":
        raise ValueError(f"method='quadrature' does not apply to task {getattr(task, 'name', task)!r} with student "
                         f"{student.spec!r} and teacher {teacher.spec!r}")
    if n_mc is None:
        cap = cap if cap is not None else (MC_MAX if fm is not None else MC_MAX_JACOBIAN)
        n_mc = MC_PILOT if pilot is None else mc_size(pilot(monte_carlo(task, MC_PILOT, seed).nodes), cap=cap)
    return monte_carlo(task, n_mc, seed)
