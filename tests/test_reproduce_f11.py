"""F11 in quick mode: the files, the tidy frame, and the verdict of every claim it shows.

The verdicts asserted are the ones E20 predicts for the unbiased (additive) teachers: the measured
best lam agrees with lambda_star (stationary) and lambda_star_n (finite n). For the biased
temperature:1.2 teacher E20's lam^2 B / 2 overestimates the bias (DESIGN 2.10 finding): the measured
best lam lies above the prediction; quick mode cannot resolve that, so only its direction is asserted.
"""
from __future__ import annotations

import pandas as pd

from bkd_theory.reproduce import CLAIM_COLUMNS
from bkd_theory.reproduce.base import FRAME_COLUMNS
from bkd_theory.verdicts import Outcome

UNBIASED = ("additive:0.005", "additive:0.02", "additive:0.08")


def test_f11_files_frame_and_verdicts(quick_figure):
    out, paths, result = quick_figure("F11")
    assert {p.name for p in paths} >= {"F11.png", "F11.csv", "F11.claims.csv", "F11.json"}
    frame = pd.read_csv(out / "F11.csv")
    assert list(frame.columns[:len(FRAME_COLUMNS)]) == list(FRAME_COLUMNS)
    assert list(pd.read_csv(out / "F11.claims.csv").columns) == list(CLAIM_COLUMNS)
    verdicts = result.verdicts()
    for t in UNBIASED:
        assert verdicts[f"E20-lambda-{t}"] == "agrees" and verdicts[f"E20-lambda-n-{t}"] == "agrees", verdicts
        for panel in ("stationary", "finite n"):
            rows = frame[(frame.series == t) & (frame.panel == panel)]
            assert set(rows.kind) == {"measured", "E20", "best lam"}
    for kind in ("E20-lambda", "E20-lambda-n"):
        rec = result.record(f"{kind}-temperature:1.2")
        assert rec.measured.value > rec.predicted.value  # E20's bias term lam^2 B / 2 is too large at tau = 1.2


def test_f11_claims_fail_on_a_wrong_prediction(quick_figure):
    """The best-lam claim of the figure disagrees with lambda_star moved by 0.3 (quick sizes)."""
    _, _, result = quick_figure("F11")
    rec = result.record("E20-lambda-n-additive:0.08")
    wrong = rec.claim.check(lambda cfg: Outcome(rec.predicted.value + 0.3, 0.0))
    assert wrong.verdict.verdict == "disagrees"
