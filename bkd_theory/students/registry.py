"""The registry of students and the one student-spec parser (DESIGN 5).

A student class registers itself, `@register_student("mlp")`, and builds itself from the rest of
its spec with the classmethod `from_spec(args, task, gauge=..., features=..., dtype=...)`
("mlp:64x64:tanh" -> args ["64x64", "tanh"]). A user's own student is named
`package.module:Name`: a `Student` subclass (called as `Name(task, dtype=dtype)`) or an `nn.Module`
class or factory (called as `Name(task.dim, task.num_classes)`), wrapped in `ModuleStudent`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from synthetic.registry import Registry, is_object_path, load_object

from ..config import Features, Gauge
from .base import Student, as_dtype

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

#: every registered student kind, by name
STUDENTS: Registry = Registry("student")


def register_student(name: str) -> Callable[[type], type]:
    """Class decorator: register a `Student` subclass (with a `from_spec` classmethod) under `name`."""
    def decorate(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Student) and hasattr(cls, "from_spec")):
            raise ValueError(f"register_student needs a Student subclass with a from_spec classmethod, got {cls!r}")
        return STUDENTS.add(name, cls, params=tuple(getattr(cls, "spec_params", ())))

    return decorate


def _user_student(path: str, task: "Task", dtype: torch.dtype) -> Student:
    from .module import ModuleStudent

    obj = load_object(path, "student")
    if isinstance(obj, type) and issubclass(obj, Student):
        return obj(task, dtype=dtype)
    if not callable(obj):
        raise ValueError(f"student {path!r} must be a Student subclass, or an nn.Module class or factory")
    module = obj(task.dim, task.num_classes)
    if not isinstance(module, nn.Module):
        raise ValueError(f"student {path!r} called as {path}(dim, num_classes) must return an nn.Module, "
                         f"got {type(module).__name__}")
    return ModuleStudent(module, dtype=dtype, name=path)


def build_student(spec: str, task: "Task", *, gauge: Gauge | str = "pinned", features: Features | str = "linear",
                  dtype: Any = torch.float32) -> Student:
    """Build a student from its spec: "linear", "mlp" (2x128 relu), "mlp:64x64", "mlp:64x64:tanh",
    or `package.module:Name` (module docstring). ValueError names the problem."""
    if isinstance(spec, Student):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"student must be a spec string like 'linear' or 'mlp:64x64:tanh', got {spec!r}")
    dtype = as_dtype(dtype)
    gauge, features = Gauge.coerce(gauge, "gauge"), Features.coerce(features, "features")
    head, *args = spec.strip().split(":")
    if is_object_path(head, STUDENTS):
        return _user_student(spec.strip(), task, dtype)
    try:
        cls = STUDENTS.get(head).obj
    except ValueError as err:
        raise ValueError(f"student spec {spec!r}: {err}") from None
    return cls.from_spec([a.strip() for a in args], task, gauge=gauge, features=features, dtype=dtype)
