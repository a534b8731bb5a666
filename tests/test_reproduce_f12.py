"""F12 in quick mode: the tidy frame and the verdict of every claim it shows (the files: the figure
contract, tests/contracts/test_contract_figures.py).

The verdicts asserted are the ones the theory predicts (DESIGN 2.10): SGD and heavy-ball agree with
E17 (heavy ball with gamma / (1 - beta)), Adam with E21, exact-BCP Adam's growth threshold with
eps gamma_E19, exact BCPs at T = 3 interpolate, the tau floor and sigma^2(T) agree. A prediction
x 1.3 fails each Equal claim (tests/test_claims.py, over the registry's defaults).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def f12(quick_figure):
    return quick_figure("F12")


def test_frame(f12):
    out, _, _ = f12
    frame = pd.read_csv(out / "F12.csv")
    assert list(frame.columns) == ["panel", "series", "kind", "x", "value", "se", "claim", "stationary"]
    opt = frame[(frame.panel == "optimizers") & (frame.kind == "measured")]
    assert set(opt.series) == {"SGD", "heavy ball 0.5", "Adam"}
    assert np.isfinite(opt.value).all() and (opt.se > 0).all() and opt.stationary.all()


def test_every_point_has_its_own_seed(f12):
    _, _, result = f12
    seeds = [r.claim.config["seed"] for r in result.records if r.claim.kind in ("E17", "E21")]
    assert len(set(seeds)) == len(seeds) == 3


def test_adam_neighborhood_is_larger_than_sgds_by_the_e21_ratio(f12):
    """At the same gamma Adam's neighborhood exceeds SGD's E17 by E21 / E17 (> 1 here: Adam's steps are
    divided by sqrt(C_ii), which is below 1 on triangle)."""
    _, _, result = f12
    adam = next(r for r in result.records if r.claim.kind == "E21")
    info = adam.measured.info
    assert info["E21_over_E17"] > 1
    assert abs(info["measured_over_E17"] - info["E21_over_E17"]) < 4 * info["measured_over_E17_se"]


def test_verdicts(f12):
    _, _, result = f12
    expected = {"E17": "agrees", "E21": "agrees", "E21-bcp": "agrees", "E22a": "holds", "E22b": "agrees",
                "E22c": "agrees"}
    got = {r.claim.id: (r.claim.kind, r.verdict.verdict) for r in result.records}
    assert {kind for kind, _ in got.values()} == set(expected)
    for cid, (kind, verdict) in got.items():
        assert verdict == expected[kind], (cid, result.record(cid).to_dict())
