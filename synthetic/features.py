"""Input features of the linear softmax student and their behaviour under affine maps of x.

The student's logits are `W xt` with `xt = (phi(x), 1)`: the bias is the LAST column of W
(contract). `phi` is either x itself ("linear", F = d) or x followed by the upper triangle of
x x^T ("quadratic", F = d + d(d+1)/2, pairs ordered as `zip(*numpy.triu_indices(d))`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import validation

FEATURE_KINDS = ("linear", "quadratic")


def feature_kind(kind: Any, name: str = "features") -> str:
    """Return `kind` as a plain string in `FEATURE_KINDS` (accepts `bkd_theory.config.Features`)."""
    return validation.one_of(name, str(getattr(kind, "value", kind)).lower(), FEATURE_KINDS)


def num_features(d: int, kind: Any = "linear") -> int:
    """Return F, the number of features (without the constant) for input dimension d."""
    d = validation.positive_int("d", d)
    return d if feature_kind(kind) == "linear" else d + d * (d + 1) // 2


def features(x: np.ndarray, kind: Any = "linear") -> np.ndarray:
    """Return phi(x) `[N, F]` float64.

    Args:
        x: inputs `[N, d]`.
        kind: "linear" (phi = x) or "quadratic" (phi = (x, x_i x_j for i <= j)).
    """
    kind = feature_kind(kind, "kind")
    x = validation.finite_array("x", x, ndim=2)
    if kind == "linear":
        return x
    i, j = np.triu_indices(x.shape[1])
    return np.concatenate([x, x[:, i] * x[:, j]], axis=1)


def augmented(x: np.ndarray, kind: Any = "linear") -> np.ndarray:
    """Return xt = (phi(x), 1) `[N, F+1]`: the student's logits are `xt @ W.T`."""
    phi = features(x, kind)
    return np.concatenate([phi, np.ones((phi.shape[0], 1))], axis=1)


def affine_feature_map(shift: np.ndarray, scale: np.ndarray, kind: Any = "linear") -> np.ndarray:
    """Return T `[F+1, F+1]` with xt(shift + scale * u) = T xt(u) for every u (DESIGN 2.6).

    If logits are `W xt(x)` in the original coordinates x = shift + scale * u, then in the
    coordinates u they are `(W T) xt(u)`: an optimum transforms as W' = W T. For linear features
    this is W' = W diag(scale), b' = b + W shift. For a quadratic term x_i x_j,
    (m_i + s_i u_i)(m_j + s_j u_j) = s_i s_j u_i u_j + m_i s_j u_j + m_j s_i u_i + m_i m_j.

    Args:
        shift: m `[d]`.
        scale: s `[d]` (any nonzero reals).
        kind: feature kind.
    """
    kind = feature_kind(kind)
    m = validation.finite_array("shift", shift, ndim=1)
    s = validation.finite_array("scale", scale, shape=m.shape)
    d = m.shape[0]
    F = num_features(d, kind)
    T = np.zeros((F + 1, F + 1))
    T[np.arange(d), np.arange(d)] = s
    T[:d, F] = m
    T[F, F] = 1.0
    if kind == "quadratic":
        for p, (i, j) in enumerate(zip(*np.triu_indices(d)), start=d):
            T[p, p] = s[i] * s[j]
            T[p, j] += m[i] * s[j]
            T[p, i] += m[j] * s[i]
            T[p, F] = m[i] * m[j]
    return T
