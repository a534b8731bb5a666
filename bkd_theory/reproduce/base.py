"""What a figure is, and the one registry of figures (DESIGN 6; STYLE "Variants register themselves").

A figure is a class registered with `@figure("F6", title=..., summary=..., claims=(...))` holding
three static functions:

    settings(quick: bool) -> dict          the sizes (quick: a few seconds; full: the published figure)
    measure(s: dict) -> Result             a tidy frame and the judged claim records behind it
    draw(result: Result, s: dict) -> plt.Figure

`claims` names the claim kinds it shows (`bkd_theory.claims.KINDS`); every claim record comes
from `claims.make(kind, ...).check()`, so a figure judges with the same recipe and rule as `bkd
check`. No figure imports another: what they share lives in `claims.recipes`, `stats` and `plots`.
`write(fig_id, result, s, out)` saves `<ID>.png`, the tidy `<ID>.csv`, `<ID>.claims.csv`, any extra
tables `<ID>.<name>.csv` and `<ID>.json` (settings, seed, versions, claim records, notes).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from synthetic.registry import Registry

#: every figure, by id ("F1" ... "F10")
FIGURES: Registry = Registry("figure")
#: the columns of `<ID>.claims.csv` (and of the claims table in figures/README.md)
CLAIM_COLUMNS = ("claim", "kind", "statement", "configuration", "predicted", "predicted_se", "measured", "measured_se",
                 "z", "verdict", "detail", "stationary")
#: the columns every tidy frame has (figures add their own after these)
FRAME_COLUMNS = ("panel", "series", "kind", "x", "value", "se")


@dataclass
class Result:
    """What `measure` returns: the tidy frame (FRAME_COLUMNS first), the judged claims (`claims.Record`),
    extra named tables (e.g. F1's loss-noise table) and notes (sentences for the index)."""

    frame: pd.DataFrame
    records: list[Any] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def verdicts(self) -> dict[str, str]:
        """claim id -> verdict."""
        return {r.claim.id: r.verdict.verdict for r in self.records}

    def record(self, claim_id: str) -> Any:
        """The record of one claim (KeyError naming the ids)."""
        for r in self.records:
            if r.claim.id == claim_id:
                return r
        raise KeyError(f"no claim {claim_id!r}; have {[r.claim.id for r in self.records]}")


@dataclass(frozen=True)
class Figure:
    """A registered figure: id, title, one-line summary, seed, the claim kinds it shows and its functions."""

    id: str
    title: str
    summary: str
    seed: int
    claims: tuple[str, ...]
    settings: Callable[[bool], dict] = field(repr=False)
    measure: Callable[[dict], Result] = field(repr=False)
    draw: Callable[[Result, dict], Any] = field(repr=False)


def figure(fig_id: str, *, title: str, summary: str, seed: int, claims: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: register the figure `fig_id` from the class's static settings/measure/draw."""
    def decorate(cls: type) -> type:
        FIGURES.add(fig_id, Figure(fig_id.upper(), title, summary, int(seed), tuple(claims), cls.settings, cls.measure,
                                   cls.draw), help=summary)
        return cls

    return decorate


def point_seed(fig_seed: int, i: int) -> int:
    """The seed of point i of a figure's curve: independent streams per point (DESIGN 2.9), so
    points compared with each other (a crossing, a slope, a threshold) have independent errors."""
    return int(fig_seed) * 10_000 + int(i)


def pair_rows(panel: str, series: str, x: float, rec: Any, predicted_kind: str, **measured_extra: Any) -> list[dict]:
    """The tidy rows of one judged claim: its measurement (kind "measured", with its stationarity and
    `measured_extra` columns) and its prediction (kind `predicted_kind`); none without a measurement."""
    if rec.measured is None:
        return []
    m, p = rec.measured, rec.predicted
    common = dict(panel=panel, series=series, x=x, claim=rec.claim.id)
    return [{**common, "kind": "measured", "value": m.value, "se": m.se, "stationary": m.stationary, **measured_extra},
            {**common, "kind": predicted_kind, "value": p.value, "se": p.se}]


def tally(records: list[Any], kind: str, verdict: str = "agrees", word: str = "agree") -> list[str]:
    """["<kind>: k/n <word>."]: how many judged claims of `kind` reached `verdict`; [] when there are none."""
    v = [r.verdict.verdict for r in records if r.claim.kind == kind]
    return [f"{kind}: {v.count(verdict)}/{len(v)} {word}."] if v else []


def claim_rows(records: list[Any]) -> pd.DataFrame:
    """The claims table (CLAIM_COLUMNS) of judged records; the configuration as compact JSON."""
    rows = []
    for rec in records:
        d = rec.to_dict()
        d["configuration"] = json.dumps(d["configuration"], sort_keys=True, default=str)
        rows.append({c: d.get(c) for c in CLAIM_COLUMNS})
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write(fig: Figure, result: Result, s: dict, out: Path, *, quick: bool, seconds: float | None = None,
          device: str = "cpu") -> list[Path]:
    """Save the figure's files into `out` (module docstring) and return their paths. The JSON names
    the runs' `device` when it is not the CPU (as a run's config hash leaves out a default device).

    Atomic per figure: every file is rendered in memory and written to a temporary name first, then
    renamed into place with `<ID>.json` (which records the mode, quick or full) last
    (`records.replace_files`), so an interrupt leaves the previous files, never a half-written one.
    """
    import io

    import matplotlib.pyplot as plt

    from ..records import replace_files, versions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    drawn = fig.draw(result, s)
    png = io.BytesIO()
    try:
        drawn.savefig(png, format="png", dpi=120, metadata={"Software": None})
    finally:
        plt.close(drawn)
    files = {f"{fig.id}.png": png.getvalue(), f"{fig.id}.csv": result.frame.to_csv(index=False).encode(),
             f"{fig.id}.claims.csv": claim_rows(result.records).to_csv(index=False).encode()}
    for name, table in result.tables.items():
        files[f"{fig.id}.{name}.csv"] = table.to_csv(index=False).encode()
    meta = {"figure": fig.id, "title": fig.title, "quick": quick, "seed": fig.seed, "settings": s,
            "seconds": None if seconds is None else round(float(seconds), 1),
            "versions": versions(), "notes": result.notes, "claims": [r.to_dict() for r in result.records]}
    if device != "cpu":
        meta["device"] = device
    files[f"{fig.id}.json"] = (json.dumps(_finite(meta), indent=1, default=str, allow_nan=False) + "\n").encode()
    written = replace_files(out, files)
    return written[:3] + [written[-1]] + written[3:-1]  # png, csv, claims.csv, json, then the extra tables
