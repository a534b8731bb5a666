"""The result store (one atomically written JSON file per cell) and `collect`, its tidy table."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:
    import pandas as pd

STATUSES = ("ok", "diverged", "error")
_CELL_FILE = re.compile(r"^[0-9a-f]{16}\.json$")


class Store:
    """A directory of cells, one `<config_hash>.json` each, written atomically."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Return the file of the cell whose config hash is `key`."""
        return self.root / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        return self.read(key) is not None

    def keys(self) -> list[str]:
        """Return the hashes of the stored cells (leftover temporary files are ignored)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name[:-5] for p in self.root.iterdir() if _CELL_FILE.match(p.name))

    def read(self, key: str) -> dict[str, Any] | None:
        """Return the stored cell, or None when it is absent or unreadable (then it is recomputed)."""
        try:
            return json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield every readable stored cell, in hash order."""
        for key in self.keys():
            record = self.read(key)
            if record is not None:
                yield record

    def write(self, record: Mapping[str, Any]) -> Path:
        """Store `record` under `record["hash"]`: temp file in the same directory, fsync, rename."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.path(record["hash"])
        text = json.dumps(record, indent=1, allow_nan=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{record['hash']}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename durable (POSIX)
            dfd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return target


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


def collect(out: str | os.PathLike, csv: str | os.PathLike | None = None) -> "pd.DataFrame":
    """One tidy row per stored cell: hash, status, message, wall_time, version, every config field,
    then `measured.*` and `predicted.*` columns (e.g. `measured.excess_risk`, `measured.excess_risk_se`,
    `measured.excess_risk_stationary`). Writes CSV to `csv` when given."""
    import pandas as pd

    if not Path(out).is_dir():
        raise ValueError(f"collect: {out} is not a sweep store directory")
    rows, fields = [], {}
    for rec in Store(out).records():
        config = rec.get("config") or {}
        fields.update(dict.fromkeys(config))
        row: dict[str, Any] = {k: rec.get(k) for k in ("hash", "status", "message", "wall_time", "version")}
        row.update(config)
        row["prediction_error"] = rec.get("prediction_error")
        _flatten("measured", _hoist(rec.get("measured") or {}), row)
        _flatten("predicted", rec.get("predicted") or {}, row)
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):  # rows ordered by the config fields that vary
        varying = [c for c in fields if df[c].astype(str).nunique() > 1]
        df = df.sort_values(varying + ["hash"], kind="stable", key=_sort_key).reset_index(drop=True)
    if csv is not None:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(csv, index=False)
    return df


def _sort_key(col: "pd.Series") -> "pd.Series":
    import pandas as pd

    num = pd.to_numeric(col, errors="coerce")
    return num if num.notna().sum() == col.notna().sum() else col.astype(str)
