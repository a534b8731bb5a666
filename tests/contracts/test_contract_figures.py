"""Contract: every registered figure through one battery, in quick mode (DESIGN 6; STYLE 12).

- it writes its PNG, the tidy CSV (FRAME_COLUMNS first), the claims CSV (CLAIM_COLUMNS, one row per
  record) and a JSON with its settings, seed and package versions;
- every claim it shows is a registered kind listed in its `claims`, with a unique id, and no
  recipe raised (verdict "error");
- the index `write_index` builds lists it with its claims.
The per-figure tests (tests/test_reproduce_*.py) assert each claim's verdict on the same run.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bkd_theory import claims
from bkd_theory.reproduce import CLAIM_COLUMNS, FIGURE_IDS, select, write_index
from bkd_theory.reproduce.base import FRAME_COLUMNS


@pytest.mark.parametrize("fig_id", FIGURE_IDS)
def test_figure_contract(fig_id, quick_figure):
    out, paths, result = quick_figure(fig_id)
    fig = select([fig_id])[0]
    assert {out / f"{fig_id}{ext}" for ext in (".png", ".csv", ".claims.csv", ".json")} <= set(paths)
    assert (out / f"{fig_id}.png").stat().st_size > 10_000
    frame = pd.read_csv(out / f"{fig_id}.csv")
    assert tuple(frame.columns[:len(FRAME_COLUMNS)]) == FRAME_COLUMNS and len(frame) > 0
    table = pd.read_csv(out / f"{fig_id}.claims.csv")
    assert tuple(table.columns) == CLAIM_COLUMNS and len(table) == len(result.records) > 0
    ids = [r.claim.id for r in result.records]
    assert len(set(ids)) == len(ids)
    for rec in result.records:
        assert rec.claim.kind in fig.claims and rec.claim.kind in claims.KINDS
        assert rec.verdict.verdict != "error", rec.to_dict()
        assert rec.measured is not None and np.isfinite(rec.measured.value), rec.to_dict()
    meta = json.loads((out / f"{fig_id}.json").read_text())
    assert meta["figure"] == fig_id and meta["quick"] is True and meta["versions"]["bkd_theory"]
    assert meta["seed"] == fig.seed and meta["settings"]
    index = write_index(out, quick=True).read_text()
    assert f"| {fig_id}: {fig.title}" in index and all(f"| {fig_id} | {i} |" in index for i in ids)
