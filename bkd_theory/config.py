"""Option enums and the frozen-configuration base (STYLE 8).

`StrEnum` members compare equal to their string values and the constructor accepts any
capitalisation, so `Gauge("Pinned") is Gauge.PINNED`. `Config` subclasses are frozen dataclasses
with `to_dict`, `from_dict` and `config_hash()`: a stable SHA-256 of the canonical JSON form.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import types
import typing
from typing import Any, TypeVar

C = TypeVar("C", bound="Config")
E = TypeVar("E", bound="StrEnum")


class StrEnum(str, enum.Enum):
    """A string enum that accepts plain strings (case-insensitive) and prints as its value."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        return None

    @classmethod
    def coerce(cls: type[E], value: Any, name: str) -> E:
        """Return the member for `value`, or raise `ValueError` naming `name` and the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ValueError(f"{name} must be one of {{{choices}}}, got {value!r}") from None


class Gauge(StrEnum):
    """Linear-student parametrisation (DESIGN 2.5): last row pinned at 0, or all K rows free."""

    PINNED = "pinned"
    FULL = "full"


class Features(StrEnum):
    """Input features of the linear student: x itself, or (x, upper triangle of x x^T)."""

    LINEAR = "linear"
    QUADRATIC = "quadratic"


class NoiseMode(StrEnum):
    """How a stochastic teacher's draws relate to training points (DESIGN 2.2)."""

    FRESH = "fresh"
    FROZEN = "frozen"
    ONLINE = "online"


class Regime(StrEnum):
    """Where inputs come from: a fresh draw from the task every step, or a fixed training set."""

    ONLINE = "online"
    FINITE = "finite"


class Init(StrEnum):
    """Initial parameters of every chain."""

    OPTIMUM = "optimum"
    PERTURBED = "perturbed"
    ZERO = "zero"
    RANDOM = "random"


class DataFeed(StrEnum):
    """Where the SGD loop's online inputs and targets are drawn (`engine.feed`)."""

    NUMPY = "numpy"
    TORCH = "torch"


class Sampling(StrEnum):
    """Minibatch sampling from a finite training set."""

    REPLACEMENT = "replacement"
    SHUFFLE = "shuffle"


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except (ValueError, TypeError):
                continue
        raise ValueError(f"{name}: cannot interpret {value!r} as {tp}")
    if origin is tuple:
        inner = typing.get_args(tp)
        if len(inner) == 2 and inner[1] is Ellipsis:
            return tuple(_coerce(inner[0], v, name) for v in value)
        return tuple(_coerce(t, v, name) for t, v in zip(inner, value))
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return tp.coerce(value, name)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    """Base for frozen run configurations: plain-data round trip and a stable hash."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (enums as strings, tuples as lists)."""
        return _plain(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build the config from `to_dict` output; unknown keys raise `ValueError`."""
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**{k: _coerce(hints[k], v, k) for k, v in data.items()})

    def replace(self: C, **changes: Any) -> C:
        """Return a copy with `changes` applied (validated again)."""
        return type(self).from_dict({**self.to_dict(), **{k: _plain(v) for k, v in changes.items()}})

    def config_hash(self) -> str:
        """Return a 16-hex-digit SHA-256 of the canonical JSON form; stable across runs and machines.

        A field marked `metadata["hash_omit_default"]` (one added after results were stored) is left
        out of the form while it has its default, so configurations that predate it keep their hash."""
        data = self.to_dict()
        for f in dataclasses.fields(self):
            if f.metadata.get("hash_omit_default") and data[f.name] == _plain(f.default):
                del data[f.name]
        canon = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(f"{type(self).__name__}:{canon}".encode()).hexdigest()[:16]
