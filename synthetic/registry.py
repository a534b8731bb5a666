"""Registries of named variants, filled by decorators (STYLE: "Variants register themselves").

One `Registry` per kind of variant (tasks here; teacher laws, students, optimizers, instruments,
claims and figures in `bkd_theory`). A variant registers itself where it is defined, so its name,
its parameters and its help text (the first line of its docstring) are written once and every
consumer (the CLI, `build`, the contract tests) reads them from the registry:

    @register_task("triangle")
    def triangle() -> Task: ...

`load_object("package.module:Name")` imports a user's own variant named on the command line.
This module sits at the bottom of the dependency chain (numpy-free), like `validation`.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered variant: its name, the object, its parameter names and a one-line help text."""

    name: str
    obj: T
    params: tuple[str, ...]
    help: str


def first_line(obj: Any) -> str:
    """The first line of `obj`'s docstring ("" when it has none)."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Named variants of one kind, in registration order.

    Args:
        kind: what the variants are ("task", "teacher", "student", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, obj: T, *, params: tuple[str, ...] = (), help: str | None = None,
            aliases: tuple[str, ...] = ()) -> T:
        """Register `obj` under `name` (lower case); a second registration of a name is an error."""
        key = str(name).lower()
        if key in self._entries or key in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = Entry(key, obj, tuple(params), first_line(obj) if help is None else help)
        for alias in aliases:
            self._aliases[str(alias).lower()] = key
        return obj

    def __call__(self, name: str, *, params: tuple[str, ...] = (), help: str | None = None,
                 aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator form of `add`."""
        def decorate(obj: T) -> T:
            return self.add(name, obj, params=params, help=help, aliases=aliases)

        return decorate

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order (aliases excluded)."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name.lower() in self._entries or name.lower() in self._aliases)

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Entry[T]:
        """The entry of `name` (case-insensitive, aliases allowed); ValueError naming the choices."""
        key = str(name).strip().lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)} "
                             f"(or package.module:Name for your own)")
        return self._entries[key]


def is_object_path(head: str, registry: "Registry | None" = None) -> bool:
    """Whether the first ':'-part of a spec names a module (`package.module:Name`) rather than a
    registered variant: it contains a dot, or it is not registered and a module of that name exists."""
    head = str(head).strip()
    if "." in head:
        return True
    if not head.isidentifier() or (registry is not None and head in registry):
        return False
    try:
        return importlib.util.find_spec(head) is not None
    except (ImportError, ValueError):
        return False


def load_object(path: str, what: str) -> Any:
    """Import `package.module:Name` (a user's own task, teacher or student named on the command line).

    Raises ValueError naming `what` when the module or the name cannot be found.
    """
    module, sep, name = str(path).partition(":")
    if not sep or not module or not name or not all(p.isidentifier() for p in (*module.split("."), *name.split("."))):
        raise ValueError(f"{what} {path!r}: expected package.module:Name")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"{what} {path!r}: cannot import module {module!r} ({err})") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {path!r}: module {module!r} has no attribute {name!r}")
        obj = getattr(obj, part)
    return obj
