"""The linear softmax student seen from the task: gauge fixing and the population Hessian at theta*.

Parameters are W `[K', F+1]` (bias last), flattened row-major: index `k * (F+1) + j` (contract).
These functions serve as the numpy oracle for `bkd_theory.theory` (DESIGN 2.5, 2.6).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import validation
from .features import augmented, feature_kind

if TYPE_CHECKING:  # pragma: no cover
    from .base import Task

GAUGES = ("pinned", "full")


def gauge_name(gauge: Any) -> str:
    """Return `gauge` as a plain string in `GAUGES` (accepts `bkd_theory.config.Gauge`)."""
    return validation.one_of("gauge", str(getattr(gauge, "value", gauge)).lower(), GAUGES)


def fix_gauge(W: np.ndarray, gauge: Any = "pinned") -> np.ndarray:
    """Return the gauge representative of the logit weights W `[K, F+1]` (DESIGN 2.5).

    Adding one vector to every row leaves softmax(W xt) unchanged. "pinned" subtracts the last row
    and drops it (`[K-1, F+1]`, the K-th row is fixed at 0); "full" centres the rows so they sum to
    zero (`[K, F+1]`, the minimum-norm representative).
    """
    gauge = gauge_name(gauge)
    W = validation.finite_array("W", W, ndim=2)
    if gauge == "pinned":
        return (W - W[-1])[:-1]
    return W - W.mean(axis=0, keepdims=True)


def linear_hessian(
    task: Task,
    gauge: Any = "pinned",
    features: Any = "linear",
    n: int = 200_000,
    rng: np.random.Generator | int | None = None,
    chunk: int = 10_000,
) -> np.ndarray:
    """Return the population Hessian of F at theta* for the linear softmax student `[P, P]`.

    At theta* the student's probabilities are p(x), so (Fisher = Hessian, DESIGN 2.5)

        H = E_x[(diag p - p p^T) kron xt xt^T],   H[k(F+1)+j, l(F+1)+i] = E[(p_k d_kl - p_k p_l) xt_j xt_i],

    estimated by Monte Carlo over n inputs x drawn from the task. "full" gives the `[K(F+1)]^2`
    matrix (singular: its null space is 1_K kron R^{F+1}); "pinned" drops the rows and columns of
    class K. H depends only on p(x), so it is defined even where the student is not realizable,
    but it is the Hessian at theta* only when it is.

    Args:
        task: the task (its `sample` and `bcp` are used).
        gauge: "pinned" or "full".
        features: "linear" or "quadratic".
        n: Monte Carlo sample size (> 0).
        rng: generator or seed (None means seed 0).
        chunk: samples processed at once (memory `chunk * P` floats).
    """
    gauge, kind = gauge_name(gauge), feature_kind(features)
    n = validation.positive_int("n", n)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    x, _ = task.sample(n, rng)
    K = task.num_classes
    H = None
    for start in range(0, n, chunk):
        xt = augmented(x[start:start + chunk], kind)
        p = task.bcp(x[start:start + chunk])
        z = (p[:, :, None] * xt[:, None, :]).reshape(len(xt), -1)  # p kron xt  [B, K(F+1)]
        block = -z.T @ z
        G = xt.shape[1]
        for k in range(K):
            block[k * G:(k + 1) * G, k * G:(k + 1) * G] += (xt * p[:, k:k + 1]).T @ xt
        H = block if H is None else H + block
    H /= n
    H = 0.5 * (H + H.T)
    if gauge == "pinned":
        G = H.shape[0] // K
        H = H[:-G, :-G]
    return H


def hessian_condition(H: np.ndarray, gauge: Any, num_classes: int) -> dict[str, float]:
    """Return {"lambda_max", "lambda_min", "kappa"} of H, on its range for the full gauge.

    In the full gauge H has exactly F+1 null directions (1_K kron R^{F+1}); the smallest nonzero
    eigenvalue is the ((K-1)(F+1))-th largest.
    """
    gauge = gauge_name(gauge)
    K = validation.positive_int("num_classes", num_classes, minimum=2)
    ev = np.sort(np.linalg.eigvalsh(H))[::-1]
    if gauge == "full":
        ev = ev[: (K - 1) * (len(ev) // K)]
    lam_max, lam_min = float(ev[0]), float(ev[-1])
    return {"lambda_max": lam_max, "lambda_min": lam_min, "kappa": lam_max / lam_min}
