"""The sweep file: a TOML grid of `RunConfig` cells, expanded and validated before any work."""
from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

if TYPE_CHECKING:
    from ..engine import RunConfig

_SPEC_KEYS = ("name", "seeds", "predict", "base", "grid", "cells")


def _run_config_cls() -> type["RunConfig"]:
    from ..engine import RunConfig

    return RunConfig


def _config_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(_run_config_cls()))


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """An expanded sweep: distinct run configurations in spec order.

    Attributes:
        name: a label for reports.
        configs: the cells, one `RunConfig` each, duplicates (same `config_hash()`) removed.
        predict: whether each cell also records `theory.predict`.
    """

    name: str
    configs: tuple["RunConfig", ...]
    predict: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str = "sweep") -> "SweepSpec":
        """Expand a parsed TOML document (see the module docstring) and validate every cell."""
        unknown = sorted(set(data) - set(_SPEC_KEYS))
        if unknown:
            raise ValueError(f"unknown sweep key(s) {unknown}; allowed: {list(_SPEC_KEYS)}")
        allowed = _config_fields()
        base = dict(_table(data, "base"))
        grid = dict(_table(data, "grid"))
        extra = data.get("cells", [])
        if not isinstance(extra, list) or not all(isinstance(c, dict) for c in extra):
            raise ValueError("cells must be an array of tables ([[cells]])")
        _check_fields("[base]", base, allowed)
        _check_fields("[grid]", grid, allowed)
        for i, cell in enumerate(extra):
            _check_fields(f"[[cells]] #{i + 1}", cell, allowed)
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"[grid] {key} must be a non-empty list, got {values!r}")
        for i, cell in enumerate(extra):
            for key, values in cell.items():
                if values == []:
                    raise ValueError(f"[[cells]] #{i + 1} {key} is an empty list")
        seeds = data.get("seeds")
        if seeds is not None:
            if not isinstance(seeds, list) or not seeds:
                raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
            clash = [where for where, t in (("[base]", base), ("[grid]", grid)) if "seed" in t]
            clash += [f"[[cells]] #{i + 1}" for i, c in enumerate(extra) if "seed" in c]
            if clash:
                raise ValueError(f"seed is given both in `seeds` and in {', '.join(clash)}; keep one")
        predict = data.get("predict", True)
        if not isinstance(predict, bool):
            raise ValueError(f"predict must be true or false, got {predict!r}")

        rows = list(_product(base, grid))
        for cell in extra:
            rows.extend(_product({**base, **{k: v for k, v in cell.items() if not isinstance(v, list)}},
                                 {k: v for k, v in cell.items() if isinstance(v, list)}))
        if seeds is not None:
            rows = [{**row, "seed": s} for row in rows for s in seeds]
        cls_ = _run_config_cls()
        configs: dict[str, RunConfig] = {}
        for row in rows:
            try:
                config = cls_.from_dict(row)
            except (TypeError, ValueError) as err:
                raise ValueError(f"invalid cell {row}: {err}") from None
            configs.setdefault(config.config_hash(), config)
        _check_names(configs.values())
        return cls(name=str(data.get("name", name)), configs=tuple(configs.values()), predict=predict)


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


def _check_names(configs: Any) -> None:
    """Resolve every distinct task, student and teacher now (`engine.build`), so a typo fails before any work."""
    from ..engine import build

    seen: set[tuple] = set()
    for c in configs:
        key = (c.task, c.standardize, c.student, c.gauge, c.features, c.teacher, c.lam)
        if key not in seen:
            seen.add(key)
            build(c)


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and expand a TOML sweep file; malformed TOML or bad fields raise `ValueError`."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: malformed TOML: {err}") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read sweep file: {err}") from None
    return SweepSpec.from_dict(data, name=path.stem)


