"""The record of one run: full config, seed, versions, wall time, and every measurement (STYLE 8).

Measurements are kept per quantity as the recorded steps `[T]` and values `[T, R]` (time, chain);
`table()` gives the tidy long form (step, chain, quantity, value). `summary()` turns each quantity
into a stationary value with its SE across chains (DESIGN 2.9). `save`/`load` use a directory of
CSV + JSON files, no pickle; floats are written with 17 significant digits, so they round-trip.
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

from .stats import stationary_window_stats, trailing_window

FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    """Return the versions of bkd_theory, numpy, torch, pandas and python."""
    import torch

    from . import __version__

    return {"bkd_theory": __version__, "numpy": np.__version__, "torch": torch.__version__, "pandas": pd.__version__, "python": platform.python_version()}


@dataclass
class Run:
    """One instrumented run of R chains.

    Attributes:
        config: the full `RunConfig` as a plain dict (`RunConfig.from_dict(run.config)` rebuilds it).
        seed: the run's seed.
        versions: package versions (see `versions`).
        wall_time: seconds, from setup to the last step.
        diverged_step: `[R]` int, the step at which each chain became non-finite (-1 = never).
        theta_final: `[R, P]` float64, final parameters (a diverged chain's last finite value).
        chains: `[R]` global chain indices (first_chain + r).
        records: quantity -> (steps `[T]` int, values `[T, R]` float64).
    """

    config: dict[str, Any]
    seed: int
    versions: dict[str, str]
    wall_time: float
    diverged_step: np.ndarray
    theta_final: np.ndarray
    chains: np.ndarray
    records: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def quantities(self) -> list[str]:
        """Names of the recorded quantities."""
        return list(self.records)

    @property
    def diverged_chains(self) -> int:
        """Number of chains that became non-finite."""
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
            frames.append(pd.DataFrame({
                "step": np.repeat(np.asarray(steps, dtype=np.int64), R),
                "chain": np.tile(np.asarray(self.chains, dtype=np.int64), T),
                "quantity": q,
                "value": vals.reshape(-1),
            }))
        if not frames:
            return pd.DataFrame({"step": pd.Series(dtype=np.int64), "chain": pd.Series(dtype=np.int64), "quantity": pd.Series(dtype=object), "value": pd.Series(dtype=np.float64)})
        return pd.concat(frames, ignore_index=True)

    def summary(self, window: int | float | None = None, *, z: float = 4.0) -> dict[str, Any]:
        """Stationary values with SE across chains (DESIGN 2.9).

        For each quantity: each chain's time average over the window (default: recorded steps in the
        last half of the run, steps >= last / 2) is one sample; `value` is their mean over the chains
        that never diverged and `se` its standard error across chains. `stationary` compares each
        chain's first-half and second-half averages of the window: true when |mean difference| <=
        z * SE of the difference across chains (None when it cannot be judged: fewer than 2 chains
        or recorded points).

        Returns:
            {"quantities": {q: {value, se, stationary, drift, drift_se, chains, window: [first, last]}},
             "diverged_chains": int, "chains": R, "steps": int, "wall_time": float}
        """
        ok = np.asarray(self.diverged_step) < 0
        out: dict[str, Any] = {}
        for q, (steps, vals) in self.records.items():
            steps = np.asarray(steps)
            order = np.argsort(steps, kind="stable")
            steps, vals = steps[order], vals[order][:, ok]
            mask = trailing_window(steps, window)
            win = vals[mask]
            entry: dict[str, Any] = {"window": [int(steps[mask][0]), int(steps[mask][-1])], "points": int(mask.sum())}
            if win.shape[0] >= 2 and win.shape[1] >= 1:
                st = stationary_window_stats(win, z=z)
                entry.update(value=st.mean, se=st.se, stationary=None if st.chains < 2 else st.stationary,
                             drift=st.drift, drift_se=st.drift_se, chains=st.chains)
            else:
                avg = win.mean(axis=0) if win.size else np.array([])
                avg = avg[np.isfinite(avg)]
                se = float(avg.std(ddof=1) / math.sqrt(len(avg))) if len(avg) >= 2 else math.nan
                entry.update(value=float(avg.mean()) if len(avg) else math.nan, se=se, stationary=None,
                             drift=math.nan, drift_se=math.nan, chains=int(len(avg)))
            out[q] = entry
        return {"quantities": out, "diverged_chains": self.diverged_chains, "chains": int(len(self.chains)),
                "steps": int(self.config.get("steps", -1)), "wall_time": float(self.wall_time)}

    def measured(self, keys: tuple[str, ...] = ("excess_risk", "dist2", "sigma2_at_optimum"), window: int | float | None = None) -> dict[str, Any]:
        """Flat summary for `bkd run --json`: q, q_se for every quantity, diverged_chains, stationary.

        `stationary` is true when every quantity among `keys` that was recorded (and is finite) passed
        the check, false when one failed, None when none could be judged.
        """
        s = self.summary(window)
        flat: dict[str, Any] = {}
        for q, e in s["quantities"].items():
            flat[q], flat[f"{q}_se"] = e["value"], e["se"]
        for q in keys:
            flat.setdefault(q, math.nan)
            flat.setdefault(f"{q}_se", math.nan)
        verdicts = [s["quantities"][q]["stationary"] for q in keys if q in s["quantities"] and np.isfinite(s["quantities"][q]["value"])]
        verdicts = [v for v in verdicts if v is not None]
        flat["stationary"] = all(verdicts) if verdicts else None
        flat["diverged_chains"] = s["diverged_chains"]
        flat["chains"] = s["chains"]
        return flat

    def save(self, path: str | Path) -> Path:
        """Write run.json (config, seed, versions, wall time, diverged steps, chains), records.csv (tidy
        table) and theta_final.csv into directory `path` (created). Returns the directory."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT_VERSION, "config": self.config, "seed": int(self.seed), "versions": self.versions,
                "wall_time": float(self.wall_time), "diverged_step": np.asarray(self.diverged_step).tolist(),
                "chains": np.asarray(self.chains).tolist(), "quantities": self.quantities}
        (d / "run.json").write_text(json.dumps(meta, indent=2, allow_nan=True))
        self.table().to_csv(d / "records.csv", index=False, float_format="%.17g")
        np.savetxt(d / "theta_final.csv", np.atleast_2d(self.theta_final), delimiter=",", fmt="%.17g")
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
        return cls(config=meta["config"], seed=meta["seed"], versions=meta["versions"], wall_time=meta["wall_time"],
                   diverged_step=np.asarray(meta["diverged_step"], dtype=np.int64), theta_final=theta, chains=chains, records=records)
