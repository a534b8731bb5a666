"""F7, F8 and F10 in quick mode: the files, the tidy frame, independent seeds, and the exact verdict of
every claim they show; each claim kind is also shown to fail on a wrong prediction.

The verdicts asserted are the ones the theory predicts for these configurations: E19's Lyapunov
threshold agrees with the sign change of the measured growth rate and lies above bcp's largest
convergent gamma, which lies beyond T1's 1/calL (DESIGN 2.7, 2.8, 2.9); E18, Prop. 2 at finite n, the
E18 ratio at nu_c and the E18 crossover agree or hold (2.4, 2.8); P3 (E9), next-order E17 and the
1/S slope agree for mc(S, base) teachers (2.5, 2.8). The tolerance-level step, the stability step
and the accuracy loss have no prediction to judge: "finding".
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bkd_theory.claims import recipes
from bkd_theory.reproduce import CLAIM_COLUMNS
from bkd_theory.reproduce.base import FRAME_COLUMNS
from bkd_theory.verdicts import Outcome

EXPECTED = {
    "F7": {"E19": "agrees", "E19-convergence": "holds", "T1-range": "holds", "tolerance-step": "finding",
           "stability-step": "finding"},
    "F8": {"E18": "agrees", "P2-finite": "holds", "E18-ratio": "agrees", "E18-crossover": "agrees",
           "accuracy-loss": "finding"},
    "F10": {"P3": "agrees", "E17+": "agrees", "E9-slope": "agrees"},
}
SEEDS = {"F7": 7, "F8": 8, "F10": 10}


@pytest.fixture(scope="module")
def made(quick_figure) -> dict:
    """Each figure in quick mode, made once per test session (`conftest.quick_figure`, shared with the
    figure contract): fig_id -> (out dir, paths, Result)."""
    return {fig_id: quick_figure(fig_id) for fig_id in EXPECTED}


@pytest.mark.parametrize("fig_id", list(EXPECTED))
def test_files_and_frame(made, fig_id):
    d, paths, result = made[fig_id]
    assert {d / f"{fig_id}{ext}" for ext in (".png", ".csv", ".claims.csv", ".json")} <= set(paths)
    assert (d / f"{fig_id}.png").stat().st_size > 10_000
    frame = pd.read_csv(d / f"{fig_id}.csv")
    assert tuple(frame.columns[:len(FRAME_COLUMNS)]) == FRAME_COLUMNS
    measured = frame[frame.kind == "measured"]
    assert len(measured) and np.isfinite(measured.value).all()
    table = pd.read_csv(d / f"{fig_id}.claims.csv")
    assert tuple(table.columns) == CLAIM_COLUMNS and len(table) == len(result.records)
    meta = json.loads((d / f"{fig_id}.json").read_text())
    assert meta["seed"] == SEEDS[fig_id] and meta["quick"] is True and meta["versions"]["bkd_theory"]


@pytest.mark.parametrize("fig_id", list(EXPECTED))
def test_verdicts(made, fig_id):
    _, _, result = made[fig_id]
    expected = EXPECTED[fig_id]
    got = {r.claim.id: (r.claim.kind, r.verdict.verdict) for r in result.records}
    assert {kind for kind, _ in got.values()} == set(expected)
    for cid, (kind, verdict) in got.items():
        assert verdict == expected[kind], (cid, result.record(cid).to_dict())


def _seeds(cfg: dict) -> list[int]:
    return [int(s) for s in cfg.get("seeds", [])] + ([int(cfg["seed"])] if "seeds" not in cfg else [])


@pytest.mark.parametrize("fig_id", list(EXPECTED))
def test_every_point_has_its_own_seed(made, fig_id):
    _, _, result = made[fig_id]
    kinds = {"F7": ("E19-convergence", "E19", "tolerance-step"), "F8": ("E18",), "F10": ("P3", "E17+")}[fig_id]
    seeds = [s for r in result.records if r.claim.kind in kinds for s in _seeds(r.claim.config)]
    assert len(seeds) == len(set(seeds)) > 2


def test_f7_onehot_step_is_a_tolerance_level_not_a_convergence_threshold(made):
    _, _, result = made["F7"]
    tol = next(r for r in result.records if r.claim.kind == "tolerance-step")
    assert "tolerance level" in tol.claim.statement and "not a convergence threshold" in tol.claim.statement
    # onehot never reaches 1e-8 F0: no onehot point of panel (a) is marked convergent
    frame = result.frame
    assert not (frame[(frame.panel == "convergence") & (frame.series == "onehot")].status == "converges").any()
    conv = next(r for r in result.records if r.claim.kind == "E19-convergence").measured
    lo, hi = conv.info["bracket"]
    assert lo < hi and conv.value == lo


WRONG = {  # a deliberately wrong prediction per kind and the verdict it must get
    "E19": (lambda p: Outcome(1.3 * p.value, p.se), "disagrees"),
    "E19-convergence": (lambda p: Outcome(0.5, 0.01), "violated"),  # a threshold below the convergent gamma
    "T1-range": (lambda p: Outcome(100 * p.value, 0.0), "violated"),  # T1's range beyond where bcp converges
    "E18": (lambda p: Outcome(1.5 * p.value, p.se), "disagrees"),
    # the ratio at nu_c cannot reject 1 at 4 SE with these replicas (quick 3.1 SE, full 3.7 SE); the crossover can:
    "E18-ratio": (lambda p: Outcome(3 * p.value, p.se), "disagrees"),
    # "equal sigma^2 means equal generalisation": the crossover at E10's nu_c
    "E18-crossover": (lambda p: Outcome(p.info["critical_noise"], 0.0), "disagrees"),
    "P2-finite": (lambda p: Outcome(1e-6, 0.0), "violated"),
    "P3": (lambda p: Outcome(1.3 * p.value, p.se), "disagrees"),
    "E17+": (lambda p: Outcome(1.5 * p.value, p.se), "disagrees"),
    "E9-slope": (lambda p: Outcome(-0.5, 0.0), "disagrees"),  # noise independent of S would be slope 0
}


@pytest.mark.parametrize("kind", list(WRONG))
def test_claims_fail_on_a_wrong_prediction(made, kind):
    records = [r for fig in made.values() for r in fig[2].records if r.claim.kind == kind]
    rec = records[0]
    wrong, verdict = WRONG[kind]
    again = rec.claim.check(predict=lambda cfg: wrong(rec.predicted))
    assert again.verdict.verdict == verdict, again.to_dict()


def test_wald_rate_recovers_the_drift_of_a_stopped_heavy_tailed_walk():
    # log d is a random walk with drift -0.01 and Student-t(3) steps (heavy tails as with large-||x|| SGD
    # steps), stopped on leaving the regime; the estimate is within 4 SE of the drift (Wald's identity)
    rng = np.random.default_rng(0)
    steps = np.cumsum(-0.01 + 0.1 * rng.standard_t(3, size=(3000, 400)), axis=0)
    d2 = np.exp(2 * (np.log(1e-7) + np.vstack([np.zeros((1, 400)), steps])))
    rate, se, _ = recipes.wald_rate(np.arange(3001, dtype=float), d2)
    assert abs(rate + 0.01) <= 4 * se and se < 0.005
    assert math.isfinite(rate)


def test_a_figure_runs_with_one_torch_thread_in_process(monkeypatch, tmp_path):
    """`bkd reproduce` makes each figure with one torch thread whether it runs in a worker or in this
    process (jobs=1), and restores the thread count: a figure's last bits do not depend on `jobs`."""
    import torch

    import bkd_theory.reproduce as rep

    seen = []
    monkeypatch.setattr(rep, "make", lambda fig_id, quick, out, device: (
        seen.append((torch.get_num_threads(), device)), ([], None))[1])
    monkeypatch.setattr(rep, "write_index", lambda *a, **k: None)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rep.reproduce(tmp_path, quick=True, only=["F2", "F3"], jobs=1)
        assert seen == [(1, "cpu")] * 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
