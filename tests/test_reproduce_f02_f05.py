"""Figure recipes F2-F5 run in quick mode and write their PNG, tidy CSV and claims (STYLE 12)."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bkd_theory.reproduce import CLAIM_COLUMNS, FIGURES

CSV_COLUMNS = ["panel", "series", "kind", "x", "value", "se"]
IDS = ("F2", "F3", "F4", "F5")
VERDICTS = ("agrees", "disagrees", "holds", "fails", "finding")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, tuple[Path, list[Path]]]:
    """Each figure's quick make() into its own temporary directory, run once for the module."""
    out = {}
    for fig in FIGURES:
        if fig.id in IDS:
            d = tmp_path_factory.mktemp(fig.id)
            out[fig.id] = (d, importlib.import_module(f"bkd_theory.reproduce.{fig.module}").make(True, d))
    return out


@pytest.mark.parametrize("fig_id", IDS)
def test_quick_figure_writes_png_csv_claims(made, fig_id):
    d, paths = made[fig_id]
    assert sorted(p.name for p in paths) == sorted([f"{fig_id}.png", f"{fig_id}.csv", f"{fig_id}.claims.csv"])
    assert all(p.parent == d and p.exists() and p.stat().st_size > 0 for p in paths)
    data = pd.read_csv(d / f"{fig_id}.csv")
    assert list(data.columns) == CSV_COLUMNS
    assert len(data) > 0 and np.isfinite(data["value"]).all()
    claims = pd.read_csv(d / f"{fig_id}.claims.csv")
    assert list(claims.columns) == list(CLAIM_COLUMNS)
    assert len(claims) > 0
    assert np.isfinite(claims["measured"].astype(float)).all()
    assert claims["verdict"].isin(VERDICTS).all()


def test_f02_props_hold(made):
    # Prop. 1 rows compare a mean with its prediction at 4 SE (paired SE, same x); Prop. 2 rows are
    # float64 rounding checks (max bcp gradient norm at theta* <= 1e-12).
    claims = pd.read_csv(made["F2"][0] / "F2.claims.csv")
    assert claims["verdict"].isin(["agrees", "holds"]).all(), claims[["claim", "verdict"]]


def test_f03_closed_forms_agree_with_monte_carlo(made):
    # Prop. 3: each closed form (E6-E10) within 4 combined SE of the Monte Carlo of per-sample
    # gradients; both are Monte Carlo means over independent samples, so their SEs add in quadrature.
    claims = pd.read_csv(made["F3"][0] / "F3.claims.csv")
    assert (claims["verdict"] == "agrees").all(), claims[["claim", "ratio", "verdict"]]


def test_f04_bounds_hold(made):
    claims = pd.read_csv(made["F4"][0] / "F4.claims.csv")
    rows = claims[claims["claim"].str.contains(r"\(E1[35]\)")]
    assert len(rows) >= 5 and (rows["verdict"] == "holds").all(), rows[["claim", "verdict"]]
