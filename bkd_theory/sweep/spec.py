"""The sweep file: a TOML grid of `RunConfig` cells, counted, expanded and validated before any work.

The cells are counted from the list lengths before anything is expanded; a sweep of more than
`Limits.max_cells` cells (`--max-cells`, default 100,000) is refused with the count. Within the
limit every cell is built and validated up front. With `force` a larger grid is not expanded: it
is streamed (`SweepSpec.iter_configs`), each list value is validated against [base] up front and
each full cell when it is reached.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from synthetic.validation import ConfigError, printable

if TYPE_CHECKING:
    from ..engine import Limits, RunConfig

_SPEC_KEYS = ("name", "seeds", "predict", "base", "grid", "cells")


def _run_config_cls() -> type["RunConfig"]:
    from ..engine import RunConfig

    return RunConfig


def _config_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(_run_config_cls()))


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A sweep: distinct run configurations in spec order.

    Attributes:
        name: a label for reports (terminal control characters removed).
        rows: the cells before validation (base, grid, extra cells, seeds), streamed by `iter_configs`.
        count: the number of cells counted before expansion (duplicates included).
        predict: whether each cell also records `theory.predict`.
        streamed: the grid was too large to expand (`force`): `configs` is not available.
    """

    name: str
    rows: tuple = dataclasses.field(repr=False)
    count: int
    predict: bool = True
    streamed: bool = False

    @functools.cached_property
    def configs(self) -> tuple["RunConfig", ...]:
        """Every distinct cell, validated, duplicates (same `config_hash()`) removed."""
        if self.streamed:
            raise ConfigError(f"sweep {self.name!r} has {self.count:,} cells: too many to expand; use iter_configs()")
        return tuple(self.iter_configs())

    def iter_configs(self) -> Iterator["RunConfig"]:
        """Yield the cells one at a time, validated; duplicates are removed (streamed sweeps: by the store)."""
        cls_, seen = _run_config_cls(), set()
        for row in _rows(*self.rows):
            try:
                config = cls_.from_dict(row)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"invalid cell {printable(row)}: {err}") from None
            if not self.streamed:
                key = config.config_hash()
                if key in seen:
                    continue
                seen.add(key)
            yield config

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str = "sweep", limits: "Limits | None" = None) -> "SweepSpec":
        """Count, expand and validate a parsed TOML document (see the module docstring)."""
        from ..engine import Limits

        if not isinstance(data, Mapping):
            raise ConfigError(f"a sweep must be a TOML table, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_SPEC_KEYS))
        if unknown:
            raise ConfigError(f"unknown sweep key(s) {[printable(u) for u in unknown]}; allowed: {list(_SPEC_KEYS)}")
        base, grid, extra, seeds = _parts(data)
        predict = data.get("predict", True)
        if not isinstance(predict, bool):
            raise ConfigError(f"predict must be true or false, got {predict!r}")
        label = data.get("name", name)
        if not isinstance(label, str):
            raise ConfigError(f"name must be a string, got {label!r}")
        count = _count(grid, extra, seeds)
        limits = Limits() if limits is None else limits
        if count > limits.max_cells and not limits.force:
            raise ConfigError(f"the sweep has {count:,} cells (the product of its [grid] lists, plus [[cells]], times "
                              f"seeds), above --max-cells {limits.max_cells:,.0f}; split it, raise --max-cells, or pass "
                              "--force to stream it")
        spec = cls(name=printable(label), rows=(base, grid, tuple(extra), seeds), count=count, predict=predict,
                   streamed=count > limits.max_cells)
        if spec.streamed:
            _check_values(base, grid, extra, seeds)
            _check_names(spec.iter_configs(), first=64)
        else:
            _check_names(spec.configs)
        return spec


def _parts(data: Mapping[str, Any]) -> tuple[dict, dict, list, list | None]:
    """([base], [grid], [[cells]], seeds) after the checks of their shapes and keys."""
    allowed = _config_fields()
    base, grid = dict(_table(data, "base")), dict(_table(data, "grid"))
    extra = data.get("cells", [])
    if not isinstance(extra, list) or not all(isinstance(c, dict) for c in extra):
        raise ConfigError("cells must be an array of tables ([[cells]])")
    _check_fields("[base]", base, allowed)
    _check_fields("[grid]", grid, allowed)
    for i, cell in enumerate(extra):
        _check_fields(f"[[cells]] #{i + 1}", cell, allowed)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[grid] {key} must be a non-empty list, got {values!r}")
    for i, cell in enumerate(extra):
        for key, values in cell.items():
            if values == []:
                raise ConfigError(f"[[cells]] #{i + 1} {key} is an empty list")
    seeds = data.get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds:
            raise ConfigError(f"seeds must be a non-empty list of integers, got {seeds!r}")
        clash = [where for where, t in (("[base]", base), ("[grid]", grid)) if "seed" in t]
        clash += [f"[[cells]] #{i + 1}" for i, c in enumerate(extra) if "seed" in c]
        if clash:
            raise ConfigError(f"seed is given both in `seeds` and in {', '.join(clash)}; keep one")
    return base, grid, extra, seeds


def _count(grid: Mapping[str, list], extra: Sequence[Mapping[str, Any]], seeds: list | None) -> int:
    """Cells before expansion: prod of the [grid] lengths + each [[cells]] sub-grid, times the seeds."""
    n = math.prod(len(v) for v in grid.values())
    n += sum(math.prod(len(v) for v in cell.values() if isinstance(v, list)) for cell in extra)
    return n * (len(seeds) if seeds is not None else 1)


def _rows(base: Mapping[str, Any], grid: Mapping[str, list], extra: Sequence[Mapping[str, Any]],
          seeds: list | None) -> Iterator[dict[str, Any]]:
    """The cells as plain dicts, in spec order: the grid, then each extra cell's sub-grid, per seed."""
    def cells() -> Iterator[dict[str, Any]]:
        yield from _product(base, grid)
        for cell in extra:
            yield from _product({**base, **{k: v for k, v in cell.items() if not isinstance(v, list)}},
                                {k: v for k, v in cell.items() if isinstance(v, list)})
    if seeds is None:
        yield from cells()
        return
    for row in cells():
        for s in seeds:
            yield {**row, "seed": s}


def _check_values(base: Mapping[str, Any], grid: Mapping[str, list], extra: Sequence[Mapping[str, Any]],
                  seeds: list | None) -> None:
    """Validate every list value alone against [base] (a streamed sweep's check before work)."""
    cls_ = _run_config_cls()
    lists = {**grid, **({"seed": seeds} if seeds is not None else {})}
    for cell in extra:
        for k, v in cell.items():
            lists.setdefault(k, []).extend(v if isinstance(v, list) else [v])
    for key, values in lists.items():
        seen: set[str] = set()
        for value in values:
            if repr(value) in seen:
                continue
            seen.add(repr(value))
            try:
                cls_.from_dict({**base, key: value})
            except (TypeError, ValueError) as err:
                raise ConfigError(f"invalid value {key} = {value!r}: {err}") from None


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"[{key}] must be a table, got {value!r}")
    return value


def _check_fields(where: str, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ValueError(f"unknown RunConfig field {key!r} in {where}; allowed: {', '.join(allowed)}")


def _product(base: Mapping[str, Any], grid: Mapping[str, list]) -> Iterator[dict[str, Any]]:
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield {**base, **dict(zip(keys, values))}


def _check_names(configs: Any, first: int | None = None) -> None:
    """Resolve every distinct task, student and teacher now (`engine.build`), so a typo fails before
    any work (streamed sweeps: those of the `first` cells; the rest when they are reached)."""
    from ..engine import build

    seen: set[tuple] = set()
    for c in itertools.islice(configs, first):
        key = (c.task, c.standardize, c.student, c.gauge, c.features, c.teacher, c.lam)
        if key not in seen:
            seen.add(key)
            try:
                build(c)
            except ValueError as err:
                raise ConfigError(f"cell with task={c.task!r}, student={c.student!r}, teacher={printable(c.teacher)!r}: "
                                  f"{err}") from None


def load_spec(path: str | os.PathLike, *, limits: "Limits | None" = None) -> SweepSpec:
    """Read, count, expand and validate a TOML sweep file; malformed TOML, bad fields, input nested
    too deeply or too many cells (`limits.max_cells`) raise `ValueError` naming the problem."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: malformed TOML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read sweep file: {getattr(err, 'strerror', None) or err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed TOML: {_deepest(path.read_text())} is nested too deeply") from None
    try:
        return SweepSpec.from_dict(data, name=path.stem, limits=limits)
    except RecursionError:
        raise ConfigError(f"{path}: {_deepest(path.read_text())} is nested too deeply (lists of lists of ...)") from None


def _deepest(text: str) -> str:
    """"line N (key)" of the most deeply bracketed line of a TOML text, for the error message."""
    lines = text.splitlines() or [""]
    i = max(range(len(lines)), key=lambda j: lines[j].count("[") + lines[j].count("{"))
    key = lines[i].split("=", 1)[0].strip() if "=" in lines[i] else lines[i][:20]
    return f"line {i + 1} ({printable(key)[:60]})"
