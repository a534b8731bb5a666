"""The THEOREMS registry (bkd_theory.theory.registry) and `bkd check`.

Light tests run the quick claims (Monte Carlo only, a few seconds) and the verdict rules on
hand-made outcomes; the whole registry (`bkd check --json`, SGD runs included) is marked slow.
"""
from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest

from bkd_theory import cli
from bkd_theory.theory import registry
from bkd_theory.theory.registry import Below, Claim, Equal, Outcome, Zero

IDS = ["P1", "P2", "P3-onehot", "P3-dirichlet", "P3-additive", "T1", "T2", "T3", "T4", "E17", "E18", "E19"]
FIELDS = {"claim", "statement", "configuration", "predicted", "measured", "measured_se", "ratio", "verdict", "passed",
          "seconds"}


def _check_record(rec: dict) -> None:
    assert FIELDS <= set(rec)
    assert isinstance(rec["passed"], bool) and isinstance(rec["verdict"], str) and rec["seconds"] >= 0
    assert "\n" not in rec["statement"]
    json.dumps(rec, allow_nan=False)  # JSON-ready, no NaN


def test_registry_holds_the_listed_claims_in_order():
    assert list(registry.THEOREMS) == IDS
    for cid, claim in registry.THEOREMS.items():
        assert claim.id == cid and "\n" not in claim.statement and claim.tags
        assert {"task", "teacher", "seed"} <= set(claim.config)
        assert callable(claim.predict) and callable(claim.measure) and callable(claim.verdict)


def test_quick_claims_pass_and_records_have_the_fields():
    records = registry.check_claims(quick=True)
    assert [r["claim"] for r in records] == [c for c in IDS if registry.THEOREMS[c].quick]
    assert {"P1", "P2", "P3-onehot", "P3-dirichlet", "P3-additive"} <= {r["claim"] for r in records}
    for rec in records:
        _check_record(rec)
        assert rec["passed"], rec
    p2 = next(r for r in records if r["claim"] == "P2")
    assert p2["measured"] <= 1e-12  # Prop. 2: exact up to rounding


def test_records_are_deterministic():
    a, b = (registry.THEOREMS["P3-dirichlet"].check() for _ in range(2))
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def _wrong_dirichlet() -> Claim:
    """E8 with 1/alpha in place of 1/(1 + alpha): sigma^2 too large by (1 + alpha)/alpha = 1.2 at alpha = 5."""
    right = registry.THEOREMS["P3-dirichlet"]

    def wrong_predict(cfg):
        p = right.predict(cfg)
        return Outcome(p.value * 6 / 5, p.se * 6 / 5)

    return dataclasses.replace(right, predict=wrong_predict)


def test_a_wrong_prediction_fails():
    rec = _wrong_dirichlet().check()
    _check_record(rec)
    assert not rec["passed"] and rec["verdict"].startswith("FAIL")
    assert rec["ratio"] == pytest.approx(5 / 6, rel=0.1)


def test_bkd_check_exits_1_when_a_claim_fails(monkeypatch, capsys):
    monkeypatch.setattr(registry, "THEOREMS", {"P3-dirichlet": _wrong_dirichlet()})
    assert cli.main(["check", "--json"]) == 1
    records = json.loads(capsys.readouterr().out)
    assert [r["claim"] for r in records] == ["P3-dirichlet"] and records[0]["passed"] is False
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0/1 claims passed" in out


def test_a_claim_that_cannot_be_measured_is_an_error_not_a_pass():
    def broken(cfg):
        raise ValueError("gamma=9 is outside the admissible range")

    rec = dataclasses.replace(registry.THEOREMS["P1"], measure=broken).check()
    _check_record(rec)
    assert not rec["passed"] and rec["verdict"].startswith("error: gamma=9")


def test_select_validates_ids():
    assert [c.id for c in registry.select("T3, P1")] == ["P1", "T3"]
    with pytest.raises(ValueError, match="only: unknown claim id"):
        registry.select("P1,P9")
    with pytest.raises(ValueError, match="only: no quick claim"):
        registry.select("T1", quick=True)


def test_rules():
    assert Equal()(Outcome(1.0, 0.1), Outcome(1.39, 0.0))[1]
    assert not Equal()(Outcome(1.0, 0.1), Outcome(1.41, 0.0))[1]
    assert Equal(rtol=0.1)(Outcome(1.0), Outcome(1.09, 0.001))[1]
    assert not Equal(rtol=0.1)(Outcome(1.0), Outcome(1.11, 0.001))[1]
    verdict, ok = Equal(rtol=0.1)(Outcome(1.0), Outcome(1.0, 0.1, info={"stationary": False}))
    assert not ok and verdict.startswith("not stationary")
    k = np.arange(3)
    bound = Outcome(1.0, 0.0, k=k, curve=np.array([3.0, 2.0, 1.0]), curve_se=np.zeros(3))
    under = Outcome(1.2, 0.1, k=k, curve=np.array([3.0, 2.1, 1.2]), curve_se=np.array([0.1, 0.1, 0.1]))
    over = Outcome(1.2, 0.01, k=k, curve=np.array([3.0, 2.1, 1.2]), curve_se=np.array([0.01, 0.01, 0.01]))
    assert Below()(bound, under)[1]
    verdict, ok = Below()(bound, over)
    assert not ok and "VIOLATED at 2/3" in verdict
    assert Zero(1e-12)(Outcome(0.0), Outcome(1e-13))[1] and not Zero(1e-12)(Outcome(0.0), Outcome(1e-11))[1]


def test_table_has_the_columns():
    text = registry.format_table([registry.THEOREMS["P2"].check()])
    header = text.splitlines()[0]
    for col in ("claim", "configuration", "predicted", "measured +- SE", "ratio", "verdict"):
        assert col in header
    assert "P2" in text and "triangle linear/pinned bcp" in text


@pytest.mark.slow
def test_a_bound_with_a_wrong_rate_is_violated():
    """T1 with mu replaced by L (contraction (1 - gamma L)^k, far too fast) must be violated."""
    right = registry.THEOREMS["T1"]

    def wrong_predict(cfg):
        p = right.predict(cfg)
        rate = 1 - cfg["gamma"] * p.info["L_local"]
        curve = p.curve[0] * rate ** p.k.astype(float)
        return dataclasses.replace(p, value=float(curve[-1]), curve=curve)

    rec = dataclasses.replace(right, predict=wrong_predict).check()
    assert not rec["passed"] and rec["verdict"].startswith("VIOLATED")


@pytest.mark.slow
def test_bkd_check_runs_every_claim_in_under_three_minutes(capsys):
    t0 = time.perf_counter()
    status = cli.main(["check", "--json"])
    seconds = time.perf_counter() - t0
    records = json.loads(capsys.readouterr().out)
    assert [r["claim"] for r in records] == IDS
    for rec in records:
        _check_record(rec)
    assert status == 0, [(r["claim"], r["verdict"]) for r in records if not r["passed"]]
    assert seconds < 180.0, seconds
