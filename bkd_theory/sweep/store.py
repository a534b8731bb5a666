"""The result store (one atomically written JSON file per cell), its claims, and `collect`.

A store trusts nothing it reads: a cell counts as stored only when its file is a JSON object whose
`hash` equals its file name, whose `config` re-hashes (`RunConfig.config_hash`) to that name, whose
`status` is one of `STATUSES` and whose `measured` is an object (or null for an error). Anything
else (`{}`, `[]`, another cell's contents, a truncated or tampered file) is reported by `inspect`
and recomputed by `run_sweep`, with a warning (`StoreWarning`). Files are strict JSON (a
non-finite number is null; its path is listed under "nonfinite").

Concurrent sweeps on one store: before computing a cell a sweep takes its claim, an exclusive
`flock` on `.<hash>.lock` in the store; a cell claimed by another live process is left to it. The
kernel drops the lock when its holder dies (even by kill -9), so a claim never goes stale.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:
    import pandas as pd

STATUSES = ("ok", "partial", "diverged", "error")
_CELL_FILE = re.compile(r"^[0-9a-f]{16}\.json$")


class StoreWarning(UserWarning):
    """A stored cell that cannot be trusted (it is recomputed) or read (`collect` leaves it out)."""


class Claim:
    """An exclusive claim on one cell (an flock held on `.<hash>.lock`); `release()` ends it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (a later claimant re-checks the store first)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Store:
    """A directory of cells, one `<config_hash>.json` each, written atomically and verified on read."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Return the file of the cell whose config hash is `key`."""
        return self.root / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        return self.read(key) is not None

    def keys(self) -> list[str]:
        """Return the hashes of the cell files (temporary and lock files are ignored)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name[:-5] for p in self.root.iterdir() if _CELL_FILE.match(p.name))

    def inspect(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """(the verified cell or None, what is wrong with its file or None when absent or valid)."""
        path = self.path(key)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as err:
            return None, f"cannot be read ({getattr(err, 'strerror', None) or err})"
        try:
            record = json.loads(text)
        except RecursionError:
            return None, "is not a cell (JSON nested too deeply)"
        except ValueError as err:
            return None, f"is not valid JSON ({err})"
        problem = _problem(key, record)
        return (None, problem) if problem else (record, None)

    def read(self, key: str) -> dict[str, Any] | None:
        """Return the stored cell, or None when it is absent or cannot be trusted (then it is recomputed)."""
        return self.inspect(key)[0]

    def scan(self) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
        """Yield (hash, verified cell or None, problem or None) for every cell file, in hash order."""
        for key in self.keys():
            yield (key, *self.inspect(key))

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield every verified stored cell, in hash order."""
        for _, record, _ in self.scan():
            if record is not None:
                yield record

    def claim(self, key: str) -> Claim | None:
        """Claim the cell `key` for this process, or None when another process holds its claim."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f".{key}.lock"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        os.write(fd, f"{os.getpid()}\n".encode())
        return Claim(path, fd)

    def write(self, record: Mapping[str, Any]) -> Path:
        """Store `record` under `record["hash"]` as strict JSON: temp file in the same directory, fsync, rename."""
        from ..records import strict_json, write_atomic

        self.root.mkdir(parents=True, exist_ok=True)
        nonfinite: dict[str, str] = {}
        data = strict_json(dict(record), nonfinite)
        if nonfinite:
            data["nonfinite"] = nonfinite
        target = write_atomic(self.path(record["hash"]), json.dumps(data, indent=1, allow_nan=False))
        with contextlib.suppress(OSError):  # make the rename durable (POSIX)
            dfd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return target


def _problem(key: str, record: Any) -> str | None:
    """What makes `record` untrustworthy as the cell `key`, or None."""
    from .spec import _run_config_cls

    if not isinstance(record, dict):
        return f"is not a cell (a JSON {type(record).__name__}, not an object)"
    if record.get("hash") != key:
        return f"holds the cell {str(record.get('hash'))[:40]!r}, not {key!r}"
    if record.get("status") not in STATUSES:
        return f"has status {str(record.get('status'))[:40]!r}, not one of {', '.join(STATUSES)}"
    measured = record.get("measured")
    if not (isinstance(measured, dict) or (measured is None and record["status"] == "error")):
        return "has no measurement object"
    config = record.get("config")
    if not isinstance(config, dict):
        return "has no config object"
    try:
        again = _run_config_cls().from_dict(config).config_hash()
    except (TypeError, ValueError, RecursionError) as err:
        return f"has an invalid config ({str(err)[:200]})"
    if again != key:
        return f"has a config that hashes to {again}, not to its name"
    return None


def plain_data(value: Any) -> Any:
    """Plain JSON data from numpy/torch scalars and arrays, dataclasses and mappings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy / torch arrays and scalars
        return plain_data(value.tolist())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Flatten nested dicts to dotted columns. A dict with a "value" key is one estimate: it becomes
    `prefix` (the value) and `prefix_<key>` for its other scalars (se, stationary, ...). Lists are
    left out (they stay in the cell files)."""
    if isinstance(value, Mapping):
        if "value" in value and not isinstance(value["value"], (Mapping, list)):
            for k, v in sorted(value.items(), key=lambda kv: kv[0] != "value"):
                if not isinstance(v, (Mapping, list)):
                    out[prefix if k == "value" else f"{prefix}_{k}"] = v
            return
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif not isinstance(value, list):
        out[prefix] = value


def _hoist(measured: Mapping[str, Any]) -> dict[str, Any]:
    """`Run.summary()` nests estimates under "quantities"; columns name them directly."""
    rest = {k: v for k, v in measured.items() if k != "quantities"}
    return {**dict(measured.get("quantities") or {}), **rest}


def collect(out: str | os.PathLike, csv: str | os.PathLike | None = None,
            problems: list[str] | None = None) -> "pd.DataFrame":
    """One tidy row per verified stored cell: hash, status, message, wall_time, version, every config
    field, then `measured.*` and `predicted.*` columns (e.g. `measured.excess_risk`,
    `measured.excess_risk_se`, `measured.excess_risk_stationary`, `measured.diverged_step` as a
    JSON list per chain). Cell files that cannot be trusted are left out and reported: appended to
    `problems` when given, and warned about (`StoreWarning`). Writes CSV to `csv` when given."""
    import pandas as pd

    if not Path(out).is_dir():
        raise ValueError(f"collect: {out} is not a sweep store directory")
    rows, fields = [], {}
    for key, rec, problem in Store(out).scan():
        if rec is None:
            message = f"cell file {Store(out).path(key)} {problem}; left out of the table"
            if problems is not None:
                problems.append(message)
            warnings.warn(message, StoreWarning, stacklevel=2)
            continue
        config = rec.get("config") or {}
        fields.update(dict.fromkeys(config))
        row: dict[str, Any] = {k: rec.get(k) for k in ("hash", "status", "message", "wall_time", "version")}
        row.update(config)
        row["prediction_error"] = rec.get("prediction_error")
        measured = rec.get("measured") or {}
        _flatten("measured", _hoist(measured), row)
        if isinstance(measured.get("diverged_step"), list):
            row["measured.diverged_step"] = json.dumps(measured["diverged_step"])
        _flatten("predicted", rec.get("predicted") or {}, row)
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):  # rows ordered by the config fields that vary
        varying = [c for c in fields if df[c].astype(str).nunique() > 1]
        df = df.sort_values(varying + ["hash"], kind="stable", key=_sort_key).reset_index(drop=True)
    if csv is not None:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        from ..records import write_atomic

        write_atomic(csv, df.to_csv(index=False))
    return df


def _sort_key(col: "pd.Series") -> "pd.Series":
    import pandas as pd

    num = pd.to_numeric(col, errors="coerce")
    return num if num.notna().sum() == col.notna().sum() else col.astype(str)
