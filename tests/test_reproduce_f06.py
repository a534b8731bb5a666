"""F6 in quick mode: the tidy frame and the verdict of every claim it shows (the files: the figure
contract, tests/contracts/test_contract_figures.py).

The verdicts asserted are the ones the theory predicts for these configurations (DESIGN 2.7, 2.8):
E17 and its next order agree at every point (each point its own seed), the next order's breakdown
point agrees, and the T4 bound holds at the edge of its range. A wrong E17 (x 1.3, see
tests/test_claims.py) fails them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def f6(quick_figure):
    return quick_figure("F6")


def test_frame(f6):
    out, _, _ = f6
    frame = pd.read_csv(out / "F6.csv")
    assert list(frame.columns) == ["panel", "series", "kind", "x", "value", "se", "claim", "stationary", "steps"]
    measured = frame[frame.kind == "measured"]
    assert np.isfinite(measured.value).all() and (measured.se > 0).all() and measured.stationary.all()


def test_every_point_has_its_own_seed(f6):
    _, _, result = f6
    seeds = [r.claim.config["seed"] for r in result.records]
    assert len(set(seeds)) == len(seeds)


def test_verdicts(f6):
    _, _, result = f6
    expected = {"E17": "agrees", "E17+": "agrees", "E17-breakdown": "agrees", "T4": "holds"}
    got = {r.claim.id: (r.claim.kind, r.verdict.verdict) for r in result.records}
    assert {kind for kind, _ in got.values()} == set(expected)
    for cid, (kind, verdict) in got.items():
        assert verdict == expected[kind], (cid, result.record(cid).to_dict())
