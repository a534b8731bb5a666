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
`save`/`load` use CSV + JSON (+ .npy for the per-point values), no pickle; floats round-trip.
"""
from __future__ import annotations

import json
import math
import platform
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
        theta_final: `[R, P]` float64, final parameters (a diverged chain's last finite value).
        chains: `[R]` global chain indices (first_chain + r).
        records: quantity -> (steps `[T]` int, values `[T, R]` float64).
        points: quantity -> (steps `[T]`, per-point values `[T, N]`) for quantities on the eval sample.
        relaxation: {"eigenvalues": H's on its range, "decay": cumulative step sizes at each
            recorded step (`{step: sum gamma_k}`), "method"}, or None when H is not known.
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
             "diverged_chains", "chains", "steps", "wall_time"}
        """
        ok = np.asarray(self.diverged_step) < 0
        out = {q: self._entry(q, np.asarray(s), v[:, ok], window) for q, (s, v) in self.records.items()}
        return {"quantities": out, "diverged_chains": self.diverged_chains, "chains": int(len(self.chains)),
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
        avg = pts[sel].mean(axis=0)
        avg = avg[np.isfinite(avg)]
        if len(avg) < 2:
            return math.nan, "undefined (fewer than 2 evaluation points)"
        return float(avg.std(ddof=1) / math.sqrt(len(avg))), f"added variance term over the {len(avg)} shared evaluation points"

    def _stationary(self, q: str, steps: np.ndarray, vals: np.ndarray, e: dict[str, Any]) -> tuple[bool | None, str]:
        if not math.isfinite(e["drift"]) or not math.isfinite(e["drift_se"]):
            return None, "cannot be judged: fewer than 4 recorded steps in the window or fewer than 2 chains"
        if abs(e["drift"]) > Z * e["drift_se"] and abs(e["drift"]) > 1e-12 * max(1.0, abs(e["value"])):
            return False, f"drift {e['drift']:.3g} +- {e['drift_se']:.2g} over the window (batch means) exceeds {Z:g} SE"
        rel = self.relaxation
        power = RELAXATION_POWER.get(q, 1.0)
        if rel is None or power is None:
            return True, "no significant drift" + ("" if rel is not None else "; relaxation not checked (H unknown)")
        frac = unrelaxed_fraction(rel["eigenvalues"], power, rel["decay"].get(int(e["window"][0]), math.nan))
        start = np.nanmean(vals[0]) if len(vals) else math.nan
        bias = abs(e["value"] - start) * frac / max(1.0 - frac, 1e-300)
        if not bias <= e["se"]:
            return False, (f"the slowest modes it weighs have not relaxed: {frac:.1%} of the transient remains at the "
                           f"window's start (bias ~{bias:.3g} > SE {e['se']:.2g})")
        return True, f"no significant drift; unrelaxed share {frac:.1e} at the window's start"

    def measured(self, window: int | float | None = None) -> dict[str, Any]:
        """Flat summary for `bkd run --json`: q, q_se, q_stationary, q_stationary_reason for every
        quantity, diverged_chains and chains."""
        s = self.summary(window)
        flat: dict[str, Any] = {}
        for q, e in s["quantities"].items():
            flat[q], flat[f"{q}_se"] = e["value"], e["se"]
            flat[f"{q}_se_eval"] = e["se_eval"]
            flat[f"{q}_stationary"], flat[f"{q}_stationary_reason"] = e["stationary"], e["stationary_reason"]
        flat["diverged_chains"], flat["chains"] = s["diverged_chains"], s["chains"]
        return flat

    def save(self, path: str | Path) -> Path:
        """Write run.json (config, seed, versions, wall time, diverged steps, chains, relaxation),
        records.csv (tidy table), theta_final.csv and points.npz into directory `path`."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        rel = None if self.relaxation is None else {
            "eigenvalues": np.asarray(self.relaxation["eigenvalues"]).tolist(), "method": self.relaxation["method"],
            "decay": {str(k): float(v) for k, v in self.relaxation["decay"].items()}}
        meta = {"format": FORMAT_VERSION, "config": self.config, "seed": int(self.seed), "versions": self.versions,
                "wall_time": float(self.wall_time), "diverged_step": np.asarray(self.diverged_step).tolist(),
                "chains": np.asarray(self.chains).tolist(), "quantities": self.quantities, "relaxation": rel,
                "points": list(self.points)}
        (d / "run.json").write_text(json.dumps(meta, indent=2, allow_nan=True))
        self.table().to_csv(d / "records.csv", index=False, float_format="%.17g")
        np.savetxt(d / "theta_final.csv", np.atleast_2d(self.theta_final), delimiter=",", fmt="%.17g")
        arrays = {f"{q}.steps": np.asarray(s) for q, (s, _) in self.points.items()}
        arrays.update({f"{q}.values": np.asarray(v) for q, (_, v) in self.points.items()})
        np.savez(d / "points.npz", **arrays)
        return d

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        """Read a run written by `save` (no pickle)."""
        d = Path(path)
        if not (d / "run.json").is_file():
            raise ValueError(f"path must be a directory written by Run.save (no run.json in {str(d)!r})")
        meta = json.loads((d / "run.json").read_text())
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
            rel = {"eigenvalues": np.asarray(rel["eigenvalues"]), "method": rel["method"],
                   "decay": {int(k): float(v) for k, v in rel["decay"].items()}}
        return cls(config=meta["config"], seed=meta["seed"], versions=meta["versions"], wall_time=meta["wall_time"],
                   diverged_step=np.asarray(meta["diverged_step"], dtype=np.int64), theta_final=theta, chains=chains,
                   records=records, points=points, relaxation=rel)
