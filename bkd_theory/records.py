"""The record of one run: full config, seed, versions, wall time, and every measurement (STYLE 8).

Measurements are kept per quantity as the recorded steps `[T]` and values `[T, R]` (time, chain);
`table()` gives the tidy long form (step, chain, quantity, value). Quantities measured on the
shared evaluation sample also keep their per-point values (mean over chains) `[T, N]` (`points`).

`summary()` turns each quantity into a stationary value with its complete error bar (DESIGN 2.9):
- each chain's time average over the window is one sample; `se_chains` is the SE across chains;
- `se_eval`, for quantities on the shared evaluation sample, is the sample's own error, common to
  every chain: the SD over the N points of their window-averaged values, over sqrt(N) (option (c)
  of DESIGN 2.9; slightly conservative, as the chain noise adds to that SD); `se` combines both;
- `stationary` is per quantity and needs both: no significant drift (batch means, `stats.drift`)
  and a run long enough for the slowest modes the quantity weighs (`relaxation`: the eigenvalues of
  H at theta*, the quantity weighing mode i by lambda_i^power, `RELAXATION_POWER`); the reason is
  given when it is false.
A chain that diverged (`engine.divergence`: non-finite, a blow-up of ||theta - theta*|| or of the
excess risk) has its step in `diverged_step` and its reason in `diverged_reason`; summaries use the
surviving chains only and say how many there are.
`save`/`load` use CSV + JSON (+ .npz for the per-point values), no pickle; floats round-trip. JSON is
strict (`strict_json`: a non-finite float becomes null, its path listed under "nonfinite"), and a
record is written atomically: every file goes to a temporary name first, run.json (which holds
the SHA-256 of the other files) is renamed into place last, and `load` checks the digests, so an
interrupted save leaves the previous record or none, never a mixture.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .stats import Z, combined_se, drift, mean_se, trailing_window, unrelaxed_fraction

FORMAT_VERSION = 2
#: how strongly each quantity weighs mode i of H: lambda_i^power (None: it does not depend on theta_k)
RELAXATION_POWER = {"dist2": 0.0, "excess_risk": 1.0, "val_loss": 1.0, "accuracy": 1.0, "bayes_agreement": 1.0,
                    "ece": 1.0, "grad_second_moment": 2.0, "grad_cov_trace": 2.0, "sigma2_at_optimum": None}


def strict_json(obj: Any, nonfinite: dict[str, str] | None = None, path: str = "") -> Any:
    """`obj` as strict-JSON data: every NaN / inf float becomes None, and its path (dotted keys,
    list indices) goes into `nonfinite` with "nan", "inf" or "-inf" as the reason."""
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isfinite(v):
            return v
        if nonfinite is not None:
            nonfinite[path or "."] = "nan" if v != v else ("inf" if v > 0 else "-inf")
        return None
    if isinstance(obj, dict):
        return {str(k): strict_json(v, nonfinite, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v, nonfinite, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return strict_json(obj.tolist(), nonfinite, path)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def file_mode() -> int:
    """The permissions a plain `open(path, "w")` would give a new file (0o666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def temp_file(target: Path, data: bytes) -> str:
    """Write `data` to a new temporary file beside `target` (fsync'd, `file_mode()`); return its path."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write `data` to `path` through a temporary file in the same directory (fsync, rename): the
    file is either the old one or the complete new one. Returns the path."""
    target = Path(path)
    tmp = temp_file(target, data.encode() if isinstance(data, str) else data)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def versions() -> dict[str, str]:
    """Return the versions of bkd_theory, numpy, torch, pandas and python."""
    import torch

    from . import __version__

    return {"bkd_theory": __version__, "numpy": np.__version__, "torch": torch.__version__, "pandas": pd.__version__,
            "python": platform.python_version()}


@dataclass
class Run:
    """One instrumented run of R chains.

    Attributes:
        config: the full `RunConfig` as a plain dict (`RunConfig.from_dict(run.config)` rebuilds it).
        seed: the run's seed. versions: package versions. wall_time: seconds, setup to last step.
        diverged_step: `[R]` int, the step at which each chain diverged (-1 = never).
        diverged_reason: `[R]` str, why ("non-finite", "distance", "excess_risk"; "" = never).
        divergence: the rule that was applied (`engine.divergence.Divergence.describe`), or None.
        theta_final: `[R, P]` float64, final parameters (a diverged chain's last finite value).
        chains: `[R]` global chain indices (first_chain + r).
        records: quantity -> (steps `[T]` int, values `[T, R]` float64).
        points: quantity -> (steps `[T]`, per-point values `[T, N]`) for quantities on the eval sample.
        relaxation: {"eigenvalues": H's on its range, "decay": cumulative step sizes at each
            recorded step (`{step: sum gamma_k}`), "method", "order": 2, or 1 for a biased teacher
            (`stats.unrelaxed_fraction`)}, or None when H is not known.
    """

    config: dict[str, Any]
    seed: int
    versions: dict[str, str]
    wall_time: float
    diverged_step: np.ndarray
    theta_final: np.ndarray
    chains: np.ndarray
    records: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    points: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    relaxation: dict[str, Any] | None = None
    diverged_reason: list[str] = field(default_factory=list)
    divergence: dict[str, Any] | None = None

    @property
    def quantities(self) -> list[str]:
        """Names of the recorded quantities."""
        return list(self.records)

    @property
    def diverged_chains(self) -> int:
        """Number of chains that diverged."""
        return int((np.asarray(self.diverged_step) >= 0).sum())

    def values(self, quantity: str) -> tuple[np.ndarray, np.ndarray]:
        """Return (steps `[T]`, values `[T, R]`) of one quantity."""
        if quantity not in self.records:
            raise ValueError(f"quantity must be one of {self.quantities}, got {quantity!r}")
        return self.records[quantity]

    def table(self) -> pd.DataFrame:
        """Return the tidy table: one row per (step, chain, quantity) with columns step, chain, quantity, value."""
        frames = []
        for q, (steps, vals) in self.records.items():
            T, R = vals.shape
            frames.append(pd.DataFrame({"step": np.repeat(np.asarray(steps, dtype=np.int64), R),
                                        "chain": np.tile(np.asarray(self.chains, dtype=np.int64), T),
                                        "quantity": q, "value": vals.reshape(-1)}))
        if not frames:
            return pd.DataFrame({"step": pd.Series(dtype=np.int64), "chain": pd.Series(dtype=np.int64),
                                 "quantity": pd.Series(dtype=object), "value": pd.Series(dtype=np.float64)})
        return pd.concat(frames, ignore_index=True)

    def summary(self, window: int | float | None = None) -> dict[str, Any]:
        """Stationary values with their complete SE and a per-quantity stationarity verdict (module docstring).

        Args:
            window: see `stats.trailing_window` (default: the recorded steps in the last half).

        Returns:
            {"quantities": {q: {value, se, se_chains, se_eval, eval_error, stationary,
             stationary_reason, drift, drift_se, chains, window: [first, last], points}},
             "diverged_chains", "surviving_chains", "diverged_step" `[R]` (-1 = never),
             "diverged_reason" `[R]`, "note" (a sentence when chains diverged, else None),
             "chains", "steps", "wall_time"}. Values are over the surviving chains only.
        """
        steps_d = np.asarray(self.diverged_step, dtype=np.int64)
        ok = steps_d < 0
        out = {q: self._entry(q, np.asarray(s), v[:, ok], window) for q, (s, v) in self.records.items()}
        R, d = int(len(self.chains)), self.diverged_chains
        reasons = list(self.diverged_reason) or ["" if s < 0 else "non-finite" for s in steps_d]
        note = None
        if d:
            first = int(steps_d[~ok].min())
            why = ", ".join(sorted({r for r in reasons if r}))
            note = (f"{d} of {R} chains diverged (first at step {first}; {why}); every value is over the "
                    f"{R - d} surviving chains" if d < R else f"all {R} chains diverged (first at step {first}; {why}): "
                    "no value can be given")
        return {"quantities": out, "diverged_chains": d, "surviving_chains": R - d, "chains": R,
                "diverged_step": steps_d.tolist(), "diverged_reason": reasons, "note": note,
                "steps": int(self.config.get("steps", -1)), "wall_time": float(self.wall_time)}

    def _entry(self, q: str, steps: np.ndarray, vals: np.ndarray, window: int | float | None) -> dict[str, Any]:
        order = np.argsort(steps, kind="stable")
        steps, vals = steps[order], vals[order]
        mask = trailing_window(steps, window)
        win = vals[mask][:, np.all(np.isfinite(vals[mask]), axis=0)] if vals.size else vals[mask]
        entry: dict[str, Any] = {"window": [int(steps[mask][0]), int(steps[mask][-1])], "points": int(mask.sum())}
        value, se_c, chains = mean_se(win.mean(axis=0)) if win.size else (math.nan, math.nan, 0)
        se_e, how = self._eval_error(q, steps[mask])
        d, d_se = drift(win) if win.shape[0] >= 4 and win.shape[1] >= 2 else (math.nan, math.nan)
        entry.update(value=value, se=combined_se(se_c, se_e) if math.isfinite(se_c) else math.nan, se_chains=se_c,
                     se_eval=se_e, eval_error=how, drift=d, drift_se=d_se, chains=int(chains))
        entry["stationary"], entry["stationary_reason"] = self._stationary(q, steps, vals, entry)
        return entry

    def _eval_error(self, q: str, window_steps: np.ndarray) -> tuple[float, str]:
        if q not in self.points:
            return 0.0, "none (not measured on the shared evaluation sample)"
        steps, pts = self.points[q]
        sel = np.isin(np.asarray(steps), window_steps)
        _, se, n = mean_se(pts[sel].mean(axis=0))
        if n < 2:
            return math.nan, "undefined (fewer than 2 evaluation points)"
        return se, f"added variance term over the {n} shared evaluation points"

    def _stationary(self, q: str, steps: np.ndarray, vals: np.ndarray, e: dict[str, Any]) -> tuple[bool | None, str]:
        if vals.shape[1] == 0:
            return None, "cannot be judged: no surviving chain (every chain diverged)"
        if e["chains"] == 0:
            return None, "cannot be judged: no chain has finite values over the window (not defined for this run)"
        if not math.isfinite(e["drift"]) or not math.isfinite(e["drift_se"]):
            return None, "cannot be judged: fewer than 4 recorded steps in the window or fewer than 2 chains"
        if abs(e["drift"]) > Z * e["drift_se"] and abs(e["drift"]) > 1e-12 * max(1.0, abs(e["value"])):
            return False, f"drift {e['drift']:.3g} +- {e['drift_se']:.2g} over the window (batch means) exceeds {Z:g} SE"
        rel = self.relaxation
        power = RELAXATION_POWER.get(q, 1.0)
        if rel is None or power is None:
            return True, "no significant drift" + ("" if rel is not None else "; relaxation not checked (H unknown)")
        frac = unrelaxed_fraction(rel["eigenvalues"], power, rel["decay"].get(int(e["window"][0]), math.nan),
                                  int(rel.get("order", 2)))
        start = np.nanmean(vals[0]) if len(vals) else math.nan
        bias = abs(e["value"] - start) * frac / max(1.0 - frac, 1e-300)
        if not bias <= e["se"]:
            return False, (f"the slowest modes it weighs have not relaxed: {frac:.1%} of the transient remains at the "
                           f"window's start (bias ~{bias:.3g} > SE {e['se']:.2g})")
        return True, f"no significant drift; unrelaxed share {frac:.1e} at the window's start"

    def measured(self, window: int | float | None = None) -> dict[str, Any]:
        """Flat summary for `bkd run --json`: q, q_se, q_stationary, q_stationary_reason for every
        quantity, then diverged_chains, surviving_chains, chains, diverged_step `[R]`,
        diverged_reason `[R]` and note."""
        s = self.summary(window)
        flat: dict[str, Any] = {}
        for q, e in s["quantities"].items():
            flat[q], flat[f"{q}_se"] = e["value"], e["se"]
            flat[f"{q}_se_eval"] = e["se_eval"]
            flat[f"{q}_stationary"], flat[f"{q}_stationary_reason"] = e["stationary"], e["stationary_reason"]
        for key in ("diverged_chains", "surviving_chains", "chains", "diverged_step", "diverged_reason", "note"):
            flat[key] = s[key]
        return flat

    def save(self, path: str | Path) -> Path:
        """Write run.json (config, seed, versions, wall time, diverged steps and reasons, chains,
        relaxation, the SHA-256 of the other files), records.csv (tidy table), theta_final.csv and
        points.npz into directory `path`, atomically (module docstring). Returns the directory."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        rel = None if self.relaxation is None else {
            "eigenvalues": np.asarray(self.relaxation["eigenvalues"]).tolist(), "method": self.relaxation["method"],
            "order": int(self.relaxation.get("order", 2)),
            "decay": {str(k): float(v) for k, v in self.relaxation["decay"].items()}}
        files = {"records.csv": self.table().to_csv(index=False, float_format="%.17g").encode()}
        buf = io.StringIO()
        np.savetxt(buf, np.atleast_2d(self.theta_final), delimiter=",", fmt="%.17g")
        files["theta_final.csv"] = buf.getvalue().encode()
        arrays = {f"{q}.steps": np.asarray(s) for q, (s, _) in self.points.items()}
        arrays.update({f"{q}.values": np.asarray(v) for q, (_, v) in self.points.items()})
        raw = io.BytesIO()
        np.savez(raw, **arrays)
        files["points.npz"] = raw.getvalue()
        nonfinite: dict[str, str] = {}
        meta = strict_json({"format": FORMAT_VERSION, "config": self.config, "seed": int(self.seed),
                            "versions": self.versions, "wall_time": float(self.wall_time),
                            "diverged_step": np.asarray(self.diverged_step).tolist(),
                            "diverged_reason": list(self.diverged_reason), "divergence": self.divergence,
                            "chains": np.asarray(self.chains).tolist(), "quantities": self.quantities, "relaxation": rel,
                            "points": list(self.points)}, nonfinite)
        meta["nonfinite"] = nonfinite
        meta["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        replace_files(d, {**files, "run.json": json.dumps(meta, indent=2, allow_nan=False).encode()})
        return d

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        """Read a run written by `save` (no pickle)."""
        d = Path(path)
        if not (d / "run.json").is_file():
            raise ValueError(f"path must be a directory written by Run.save (no run.json in {str(d)!r})")
        meta = json.loads((d / "run.json").read_text())
        for name, digest in (meta.get("files") or {}).items():
            if not (d / name).is_file() or hashlib.sha256((d / name).read_bytes()).hexdigest() != digest:
                raise ValueError(f"path {str(d)!r}: the run record is incomplete or was modified ({name} does not "
                                 "match run.json); save it again")
        chains = np.asarray(meta["chains"], dtype=np.int64)
        table = pd.read_csv(d / "records.csv", dtype={"step": np.int64, "chain": np.int64, "quantity": str, "value": np.float64})
        records = {}
        for q in meta["quantities"]:
            wide = table[table["quantity"] == q].pivot(index="step", columns="chain", values="value")
            records[q] = (wide.index.to_numpy(dtype=np.int64), wide.reindex(columns=chains).to_numpy(dtype=np.float64))
        theta = np.loadtxt(d / "theta_final.csv", delimiter=",", dtype=np.float64, ndmin=2)
        points = {}
        if (d / "points.npz").is_file():
            with np.load(d / "points.npz", allow_pickle=False) as z:
                points = {q: (z[f"{q}.steps"], z[f"{q}.values"]) for q in meta.get("points", [])}
        rel = meta.get("relaxation")
        if rel is not None:
            rel = {"eigenvalues": np.asarray(rel["eigenvalues"], dtype=np.float64), "method": rel["method"],
                   "decay": {int(k): math.nan if v is None else float(v) for k, v in rel["decay"].items()}}
        return cls(config=meta["config"], seed=meta["seed"], versions=meta["versions"], wall_time=meta["wall_time"],
                   diverged_step=np.asarray(meta["diverged_step"], dtype=np.int64), theta_final=theta, chains=chains,
                   records=records, points=points, relaxation=rel, diverged_reason=list(meta.get("diverged_reason", [])),
                   divergence=meta.get("divergence"))


def replace_files(d: Path, files: dict[str, bytes]) -> list[Path]:
    """Write `files` (name -> bytes) into directory `d`, the last one last: all go to temporary names
    first (an interrupt there leaves the previous files untouched and no temporary behind; a kill
    leaves temporaries that the next save removes); then the old last file (the record's index:
    run.json, <ID>.json) is removed, the others are renamed into place and the last one after
    them. Returns the paths in the order of `files`."""
    names = list(files)
    temps: dict[str, str] = {}
    try:
        for name in names:
            temps[name] = temp_file(d / name, files[name])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(d / names[-1])
        for name in names:
            os.replace(temps[name], d / name)
            del temps[name]
    finally:
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    for name in names:  # temporaries of an earlier save that was killed (kill -9 skips the cleanup above)
        for stale in d.glob(f".{glob.escape(name)}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
    return [d / name for name in names]
