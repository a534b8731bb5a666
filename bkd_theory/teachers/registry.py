"""The registry of target laws and the one spec parser (DESIGN 5).

A law registers itself where it is defined:

    @register_law("dirichlet", params=("alpha",))
    class Dirichlet(Teacher): ...

which sets `Dirichlet.name` and `Dirichlet.params` (so `spec` is derived) and lets
`parse_teacher("dirichlet:5")` build it. Parameters are parsed by the constructor's annotations:
numbers for `float`/`int`, and the rest of the spec for a parameter annotated as a `Teacher`
(composites: "mc:4:dirichlet:5", "mixture:0.3:onehot"). A user's own law is named
`package.module:Name[:PARAM...]`. Nesting is limited to `MAX_DEPTH` levels.
"""
from __future__ import annotations

import inspect
import typing
from typing import Any, Callable

from synthetic.registry import Registry, is_object_path, load_object

from .base import Teacher

#: every registered target law, by name
LAWS: Registry = Registry("teacher")
#: the deepest nesting of composite specs ("mc:2:mc:2:...") that `parse_teacher` accepts
MAX_DEPTH = 16


def register_law(name: str, *, params: tuple[str, ...] = (), aliases: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: register a `Teacher` subclass under `name` with its spec parameters."""
    def decorate(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Teacher)):
            raise ValueError(f"register_law needs a Teacher subclass, got {cls!r}")
        cls.name, cls.params = name, tuple(params)
        return LAWS.add(name, cls, params=tuple(params), aliases=aliases)

    return decorate


def _is_teacher_type(tp: Any) -> bool:
    args = typing.get_args(tp) or (tp,)
    return any(isinstance(a, type) and issubclass(a, Teacher) for a in args)


def _number(text: str, name: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"teacher spec {spec!r}: {name} must be a number, got {text!r}") from None


def _resolve(parts: list[str], spec: str) -> tuple[type, tuple[str, ...], list[str]]:
    """(class, parameter names, parameter texts) of a spec split at ':'."""
    head = parts[0]
    if is_object_path(head, LAWS):  # package.module:Name[:PARAM...]
        if len(parts) < 2:
            raise ValueError(f"teacher spec {spec!r}: expected package.module:Name")
        cls = load_object(f"{head}:{parts[1]}", "teacher")
        if not (isinstance(cls, type) and issubclass(cls, Teacher)):
            raise ValueError(f"teacher {head}:{parts[1]} must be a bkd_theory.teachers.Teacher subclass")
        params = tuple(cls.params) or tuple(p for p in inspect.signature(cls).parameters if p != "self")
        return cls, params, parts[2:]
    entry = LAWS.get(head)
    return entry.obj, entry.params, parts[1:]


def _arguments(cls: type, params: tuple[str, ...], texts: list[str], spec: str, depth: int) -> list[Any]:
    hints = typing.get_type_hints(cls.__init__) if params else {}
    nested = [p for p in params if _is_teacher_type(hints.get(p))]
    example = ":".join([cls.name or "name", *("onehot" if p in nested else ("2" if hints.get(p) is int else "0.5")
                                               for p in params)])
    if (len(texts) != len(params)) if not nested else (len(texts) < len(params)):
        count = {0: "no parameters", 1: "one parameter"}.get(len(params), f"{len(params)} parameters")
        what = count if not params else f"{count} ({', '.join(params)})"
        raise ValueError(f"teacher spec {spec!r}: {cls.name or cls.__name__!r} takes {what}, e.g. {example!r}")
    args: list[Any] = []
    for i, p in enumerate(params):
        if p in nested:
            if p != params[-1]:
                raise ValueError(f"teacher {cls.__name__}: a nested teacher must be the last parameter")
            args.append(parse_teacher(":".join(texts[i:]), _depth=depth + 1))
        else:
            args.append(_number(texts[i], p, spec))
    return args


def parse_teacher(spec: str | Teacher, *, _depth: int = 0) -> Teacher:
    """Build a teacher from its spec (DESIGN 5); a `Teacher` is returned unchanged.

    Names are case-insensitive. Unknown names, wrong arity, bad numbers and nesting deeper than
    `MAX_DEPTH` raise `ValueError` naming the problem.
    """
    if isinstance(spec, Teacher):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"teacher must be a Teacher or a spec string like 'dirichlet:5', got {spec!r}")
    if _depth >= MAX_DEPTH:
        raise ValueError(f"teacher spec nests deeper than {MAX_DEPTH} levels")
    parts = [s.strip() for s in spec.strip().split(":")]
    try:
        cls, params, texts = _resolve(parts, spec)
    except ValueError as err:
        raise ValueError(f"teacher spec {spec!r}: {err}") from None
    return cls(*_arguments(cls, params, texts, spec, _depth))
