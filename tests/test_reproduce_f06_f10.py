"""Figure recipes F6, F7, F8 and F10 in quick mode (STYLE 12): each writes its PNG, the tidy CSV
behind it and a claims file whose measured values are finite."""
from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from bkd_theory.reproduce import CLAIM_COLUMNS

CASES = [
    ("F6", "f06_neighborhood", {"panel", "series", "kind", "x", "value", "se", "stationary", "steps"}),
    ("F7", "f07_step_sizes", {"panel", "series", "kind", "x", "value", "se", "convergent", "diverged_chains"}),
    ("F8", "f08_generalisation", {"panel", "series", "kind", "x", "value", "se", "converged"}),
    ("F10", "f10_mc_samples", {"panel", "series", "kind", "x", "value", "se", "stationary", "steps"}),
]


@pytest.mark.parametrize("fig_id, module, columns", CASES, ids=[c[0] for c in CASES])
def test_quick_figure(tmp_path, fig_id, module, columns):
    make = importlib.import_module(f"bkd_theory.reproduce.{module}").make
    paths = make(True, tmp_path)
    png, csv, claims = (tmp_path / f"{fig_id}{ext}" for ext in (".png", ".csv", ".claims.csv"))
    assert {png, csv, claims} <= set(paths)
    assert png.stat().st_size > 10_000
    data = pd.read_csv(csv)
    assert set(data.columns) == columns
    assert len(data) > 0 and np.isfinite(data["value"].dropna()).all()
    table = pd.read_csv(claims)
    assert tuple(table.columns) == CLAIM_COLUMNS
    assert len(table) >= 3
    assert np.isfinite(table["measured"].to_numpy(dtype=float)).all()
    assert table["verdict"].isin(["agrees", "disagrees", "holds", "fails", "finding", "inconclusive"]).all()
