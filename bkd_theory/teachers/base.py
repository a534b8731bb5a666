"""The one teacher protocol (DESIGN 2.2): the conditional law of the target t given (x, y).

A teacher sees x through the true BCP vector p = p(x) and, for label-based laws, the label y ~ Cat(p)
drawn with x; a teacher of x itself (a trained network, any fixed function p~(x)) also reads x.
Every caller passes all three (`sample(p, y, rng, x=x)`), so nothing tells two kinds of teacher
apart. The moments are conditional on x with y marginalised: tbar(x) = E[t | x] and Cov(t | x),
the inputs of sigma_T^2 (E4) and C_T (E5).

Extension points (public): a law subclasses `Teacher` and implements

    _sample(p, y, rng) -> t `[M, K]`      one draw per row, p `[M, K]` validated, y `[M]` or None
    _cov(p) -> `[M, K, K]`                Cov(t | x)
    _mean(p) -> `[M, K]`                  E[t | x]            (default p: an unbiased law)
    _label_cross_cov(p) -> `[M, K, K]`    Cov(e_y, t | x)     (default 0: t does not read y)

and registers itself with `@register_law("name", params=(...))` (teachers/__init__). A law may
also declare its covariance in closed form, `_cov_form()`, as a combination of the standard forms
(`CovForm`), which lets the theory use the students' closed forms (E6-E11) for it.

A law may also draw in torch, for the torch data feed (`engine.feed`): it sets `torch_form = True`
and implements `_draw_torch(p, y, generator, x, num_classes, dtype)` (p, y, x tensors, p None when
`reads_p` is False). Laws without it are drawn by `sample` from the chain's numpy teacher stream.

Composite teachers (`Mixture`, `MC`) and teachers of x override the x-aware level
`_draw(p, y, rng, x)`, `_mean_at(p, x)`, `_cov_at(p, x)`, `_cross_at(p, x)`, whose defaults apply
the law hooks to `_source(p, x)`: p itself for a law, p~(x) for a `FunctionTeacher`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from synthetic.validation import probability_vectors

UNIT_FORMS = ("label", "identity", "tangent")


def fmt(value: float) -> str:
    """Shortest spec text that parses back to `value` ("5" for 5.0, "0.01", "1e-40")."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def check_p(p: Any, name: str = "p") -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate p `[..., K]` on the simplex; return it flattened to `[M, K]` and the batch shape.

    Entries within the validation tolerance below 0 are set to 0 and rows are renormalised.
    """
    arr = probability_vectors(name, p)
    arr = np.clip(arr, 0.0, None)
    arr = arr / arr.sum(axis=-1, keepdims=True)
    return arr.reshape(-1, arr.shape[-1]), arr.shape[:-1]


def check_y(y: Any, batch: tuple[int, ...], k: int) -> np.ndarray:
    """Validate integer labels of shape `batch` with values in [0, K); return them flat `[M]`."""
    arr = np.asarray(y)
    if arr.shape != batch:
        raise ValueError(f"y must have shape {batch} (the batch shape of p), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"y must hold integer class labels, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= k):
        raise ValueError(f"y must hold labels in [0, {k - 1}] (K={k}), got range [{arr.min()}, {arr.max()}]")
    return arr.reshape(-1).astype(np.int64)


def check_x(x: Any, batch: tuple[int, ...]) -> np.ndarray | None:
    """Validate inputs x `[*batch, d]` (or None); return them flat `[M, d]`."""
    if x is None:
        return None
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != len(batch) + 1 or arr.shape[:-1] != batch:
        raise ValueError(f"x must have shape {(*batch, 'd')} (the batch shape of p), got {arr.shape}")
    return arr.reshape(-1, arr.shape[-1])


def label_cov(p: np.ndarray) -> np.ndarray:
    """C_y = Cov(e_y | x) = diag(p) - p p^T, `[M, K]` -> `[M, K, K]`."""
    out = -p[:, :, None] * p[:, None, :]
    idx = np.arange(p.shape[-1])
    out[:, idx, idx] += p
    return out


def zeros_cov(p: np.ndarray) -> np.ndarray:
    """Zero covariance `[M, K, K]` for p `[M, K]`."""
    return np.zeros((p.shape[0], p.shape[1], p.shape[1]))


def unit_cov(form: str, p: np.ndarray) -> np.ndarray:
    """The standard covariance forms `[M, K, K]`: "label" C_y, "identity" I, "tangent" I - 1 1^T / K."""
    k = p.shape[1]
    if form == "label":
        return label_cov(p)
    base = np.eye(k) if form == "identity" else np.eye(k) - 1.0 / k
    return np.broadcast_to(base, (p.shape[0], k, k)).copy()


@dataclass(frozen=True)
class CovForm:
    """Cov(t | x) = sum_c coef[c] U_c(p(x)) over the standard forms U_c (`UNIT_FORMS`, `unit_cov`).

    Attributes:
        coef: form name -> coefficient (missing forms have coefficient 0).
        tag: the DESIGN equation(s) the form comes from, e.g. "E8".
    """

    coef: Mapping[str, float] = field(default_factory=dict)
    tag: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.coef) - set(UNIT_FORMS)
        if unknown:
            raise ValueError(f"CovForm coefficients must be among {UNIT_FORMS}, got {sorted(unknown)}")

    def scaled(self, a: float, tag: str | None = None) -> CovForm:
        return CovForm({k: a * v for k, v in self.coef.items()}, self.tag if tag is None else tag)

    def plus(self, other: CovForm, tag: str | None = None) -> CovForm:
        keys = dict.fromkeys([*self.coef, *other.coef])
        return CovForm({k: self.coef.get(k, 0.0) + other.coef.get(k, 0.0) for k in keys},
                       tag if tag is not None else "+".join(t for t in (self.tag, other.tag) if t))

    def matrix(self, p: np.ndarray) -> np.ndarray:
        """The covariance `[M, K, K]` this form gives at p `[M, K]`."""
        out = zeros_cov(p)
        for form, a in self.coef.items():
            out += a * unit_cov(form, p)
        return out


class Teacher(abc.ABC):
    """A target law t | (x, y), seen through p = p(x), the label y and (where needed) x.

    Attributes:
        name: the registered name ("dirichlet"); params: the constructor's parameter names in spec
            order (set by `register_law`). spec: "dirichlet:5"; `str(teacher)` returns it.
        unbiased: tbar(x) == p(x) for every x.
        stochastic: t is random given x (y marginalised), Cov(t | x) != 0.
        uses_label: `sample` reads y (onehot, smoothing, mixture).
        sums_to_one: every draw has sum(t) = 1 (False for additive noise, which leaves the simplex).
        moments_exact: `mean`/`cov` are closed forms (False for clipped noise).
        needs_x: `sample` and the moments read x (a teacher of x, or a composite over one).
        reads_p: `sample` reads the values of p (False: only its shape, e.g. onehot; the data feed
            then skips computing p and passes a uniform placeholder).
        torch_form: `draw_torch` is implemented (`_draw_torch`).
    """

    name: str = ""
    params: tuple[str, ...] = ()
    unbiased: bool = True
    stochastic: bool = True
    uses_label: bool = False
    sums_to_one: bool = True
    moments_exact: bool = True
    needs_x: bool = False
    reads_p: bool = True
    torch_form: bool = False

    @property
    def _needs_rng(self) -> bool:  # t is random given (p, y); onehot and smoothing are not
        return self.stochastic

    @property
    def spec(self) -> str:
        """The CLI spec of this teacher: its registered name (or `module:Class` for an unregistered
        one), then its parameters, separated by ':'."""
        parts = [getattr(self, p) for p in self.params]
        name = self.name or f"{type(self).__module__}:{type(self).__qualname__}"
        return ":".join([name, *(v.spec if isinstance(v, Teacher) else fmt(v) for v in parts)])

    # ------------------------------------------------------------------ public API
    def _inputs(self, p: Any, y: Any, x: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, tuple]:
        pf, batch = check_p(p)
        yf = None if y is None else check_y(y, batch, pf.shape[-1])
        xf = check_x(x, batch)
        if xf is None and self.needs_x:
            raise ValueError(f"x (the inputs) is required by teacher {self.spec!r}, a function of x")
        return pf, yf, xf, batch

    def sample(self, p: np.ndarray, y: np.ndarray | None, rng: np.random.Generator | None, *,
               x: np.ndarray | None = None) -> np.ndarray:
        """Draw one target per row.

        Args:
            p: true BCPs `[N, K]` (any batch shape `[..., K]`), rows on the simplex.
            y: labels `[N]` drawn with x; may be None when `uses_label` is False.
            rng: generator of the teacher noise; may be None when t is fixed given (p, y, x).
            x: inputs `[N, d]`; required when `needs_x`.

        Returns:
            t `[N, K]` float64 (same batch shape as p).
        """
        pf, yf, xf, batch = self._inputs(p, y, x)
        if yf is None and self.uses_label:
            raise ValueError(f"y (labels) is required by teacher {self.spec!r}")
        if self._needs_rng and not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy Generator for the stochastic teacher {self.spec!r}, got {rng!r}")
        return self._draw(pf, yf, rng, xf).reshape(*batch, pf.shape[-1])

    def draw_torch(self, p: torch.Tensor | None, y: torch.Tensor, generator: torch.Generator, *,
                   x: torch.Tensor | None, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
        """Draw one target per row in torch (the torch data feed).

        Args:
            p: BCPs `[M, K]` of x (None allowed when `reads_p` is False). y: labels `[M]` int64.
            generator: the chain's torch teacher stream. x: inputs `[M, d]` (for teachers of x).
            num_classes: K. dtype: the dtype of the returned targets.

        Returns:
            t `[M, K]` of `dtype`. ValueError when the teacher has no torch form (`torch_form`).
        """
        if not self.torch_form:
            raise ValueError(f"teacher {self.spec!r} has no torch form; draw it with `sample`")
        if p is None and self.reads_p:
            raise ValueError(f"p (the BCPs) is required by teacher {self.spec!r}")
        return self._draw_torch(p, y, generator, x, int(num_classes), dtype)

    def _draw_torch(self, p: torch.Tensor | None, y: torch.Tensor, generator: torch.Generator,
                    x: torch.Tensor | None, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover (guarded by `torch_form`)

    def mean(self, p: np.ndarray, *, x: np.ndarray | None = None) -> np.ndarray:
        """tbar = E[t | x] `[N, K]` for p `[N, K]` (y ~ Cat(p) marginalised)."""
        pf, _, xf, batch = self._inputs(p, None, x)
        return self._mean_at(pf, xf).reshape(*batch, pf.shape[-1])

    def cov(self, p: np.ndarray, *, x: np.ndarray | None = None) -> np.ndarray:
        """Cov(t | x) `[N, K, K]` for p `[N, K]` (y ~ Cat(p) marginalised); symmetric PSD."""
        pf, _, xf, batch = self._inputs(p, None, x)
        return self._cov_at(pf, xf).reshape(*batch, pf.shape[-1], pf.shape[-1])

    def label_cross_cov(self, p: np.ndarray, *, x: np.ndarray | None = None) -> np.ndarray:
        """X = Cov(e_y, t | x) = E[(e_y - p)(t - tbar)^T | x] `[N, K, K]` (rows: label, columns: t).

        Zero unless t reads the label y drawn with x. `Mixture` needs it for its covariance (E20).
        """
        pf, _, xf, batch = self._inputs(p, None, x)
        return self._cross_at(pf, xf).reshape(*batch, pf.shape[-1], pf.shape[-1])

    def cov_form(self) -> CovForm | None:
        """Cov(t | x) as a combination of the standard forms (closed forms E6-E9), or None."""
        return self._cov_form()

    # ------------------------------------------------------------------ x-aware level
    def _source(self, p: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        """The probabilities the law hooks are applied to: the true p (a teacher of x: p~(x))."""
        return p

    def _draw(self, p: np.ndarray, y: np.ndarray | None, rng: Any, x: np.ndarray | None) -> np.ndarray:
        return self._sample(self._source(p, x), y, rng)

    def _mean_at(self, p: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        return self._mean(self._source(p, x))

    def _cov_at(self, p: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        return self._cov(self._source(p, x))

    def _cross_at(self, p: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        return self._label_cross_cov(self._source(p, x))

    # ------------------------------------------------------------------ law hooks
    @abc.abstractmethod
    def _sample(self, p: np.ndarray, y: np.ndarray | None, rng: np.random.Generator | None) -> np.ndarray:
        """One draw per row `[M, K]` for validated p `[M, K]` and labels y `[M]` (or None)."""

    def _mean(self, p: np.ndarray) -> np.ndarray:
        return p.copy()

    @abc.abstractmethod
    def _cov(self, p: np.ndarray) -> np.ndarray:
        """Cov(t | x) `[M, K, K]`."""

    def _label_cross_cov(self, p: np.ndarray) -> np.ndarray:
        return zeros_cov(p)

    def _cov_form(self) -> CovForm | None:
        return None

    def _cross_form(self) -> CovForm | None:
        """Cov(e_y, t | x) as a combination of the standard forms (zero when t does not read y)."""
        return None if self.uses_label else CovForm({}, "")

    # ------------------------------------------------------------------ identity
    def __str__(self) -> str:
        return self.spec

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.spec))
