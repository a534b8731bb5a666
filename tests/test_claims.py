"""The claims engine (bkd_theory.claims) and `bkd check`: the registry, records that can fail, and
error bars that mean what they say (DESIGN 2.9).

Light tests run the quick claims (Monte Carlo only); the registry-wide wrong-prediction test runs
every default claim once (SGD included, ~30 s) because a claim that cannot be failed by a 30 % error
is not a claim.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import stats as sps

from bkd_theory import cli, claims
from bkd_theory.engine import run
from bkd_theory.verdicts import Bound, Equal, Finding, Outcome, Sign, Zero

CORE = ["P1", "P2", "P3", "T1", "T2", "T3", "T4", "E17", "E17+", "E17'", "E17-breakdown", "E18", "E19"]
FIELDS = {"claim", "kind", "statement", "tags", "configuration", "predicted", "predicted_se", "measured", "measured_se",
          "ratio", "z", "verdict", "detail", "stationary", "seconds", "details"}


def _every_default() -> list[claims.Claim]:
    return claims.defaults()


def test_registry_holds_the_core_kinds_with_unique_ids():
    names = [e.obj.name for e in claims.KINDS]
    assert set(CORE) <= set(names)
    every = _every_default()
    assert len({c.id for c in every}) == len(every)
    for c in every:
        assert {"task", "teacher", "seed"} <= set(c.config) and c.spec.tags and "\n" not in c.statement
        assert "{" not in c.statement, c.statement  # the template is filled from the configuration


def test_quick_claims_pass_and_records_are_json():
    records = claims.check_claims(quick=True)
    assert [r.claim.id for r in records] == ["P1", "P2", "P3-onehot", "P3-dirichlet", "P3-additive"]
    for rec in records:
        d = rec.to_dict()
        assert FIELDS <= set(d) and not rec.failed, d
        json.dumps(d, allow_nan=False)
    assert records[1].measured.value <= 1e-12  # Prop. 2: exact up to rounding


def test_records_are_deterministic():
    a, b = (claims.defaults("P3-dirichlet")[0].check().to_dict() for _ in range(2))
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def _scaled(predict, factor: float):
    def wrong(cfg):
        p = predict(cfg)
        return Outcome(p.value * factor, p.se * factor, k=p.k, curve=None if p.curve is None else p.curve * factor,
                       curve_se=p.curve_se, vacuous=p.vacuous)

    return wrong


@pytest.mark.parametrize("claim", [c for c in _every_default() if isinstance(c.spec.rule, Equal)], ids=lambda c: c.id)
def test_a_thirty_percent_wrong_prediction_flips_every_equal_claim(claim):
    """Every Equal claim agrees with its own prediction and disagrees with the same prediction x 1.3
    (x 0.7 too): its combined SE resolves a 30 % error. A zero prediction (P1) is shifted instead by
    2 % of the risk it compares, 0.01 nat."""
    right = claim.check()
    assert right.verdict.verdict == "agrees", right.to_dict()
    if right.predicted.value == 0.0:
        shifted = claim.check(lambda cfg: Outcome(0.01, 0.0))
        assert shifted.verdict.verdict == "disagrees", shifted.to_dict()
        return
    for factor in (1.3, 0.7):
        wrong = claim.check(_scaled(claim.spec.predict, factor))
        assert wrong.verdict.verdict == "disagrees", (factor, wrong.to_dict())


def test_bound_claims_are_violated_by_a_bound_too_tight():
    """T1-T4 hold with their own bound and are violated by the same bound x 0.01 (a curve below the
    measurement)."""
    for kind in ("T1", "T3"):
        claim = claims.defaults(kind)[0]
        assert claim.check().verdict.verdict == "holds"
        assert claim.check(_scaled(claim.spec.predict, 0.01)).verdict.verdict == "violated"


def test_bkd_check_exits_1_on_a_failed_claim(monkeypatch, capsys):
    entry = claims.KINDS.get("P3")
    wrong = dataclasses.replace(entry.obj, predict=_scaled(entry.obj.predict, 1.2))  # E8 off by 20 %
    monkeypatch.setitem(claims.KINDS._entries, "p3", dataclasses.replace(entry, obj=wrong))
    assert cli.main(["check", "--only", "P3-dirichlet", "--json"]) == 1
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["verdict"] == "disagrees" and rec["ratio"] == pytest.approx(1 / 1.2, rel=0.1)
    assert cli.main(["check", "--only", "P3-dirichlet"]) == 1
    assert "failed: P3-dirichlet" in capsys.readouterr().out


# ------------------------------------------------------------------ the rules on hand-made outcomes
def test_equal_has_no_percentage_escape_and_checks_stationarity_first():
    assert Equal()(Outcome(1.0, 0.0), Outcome(1.05, 0.01)).verdict == "disagrees"  # 5 % off, 5 SE
    assert Equal()(Outcome(1.0, 0.01), Outcome(1.05, 0.01)).verdict == "agrees"  # combined SE: z = 3.5
    assert Equal()(Outcome(1.0), Outcome(3.0, 0.1, stationary=False, reason="drift")).verdict == "not stationary"
    assert Equal(resolution=0.1)(Outcome(1.0), Outcome(1.0, 0.5)).verdict == "inconclusive"


def test_sign_bound_zero_and_finding():
    assert Sign("+")(Outcome(0.0), Outcome(1.0, 0.1)).verdict == "holds"
    assert Sign("+")(Outcome(0.0), Outcome(-1.0, 0.1)).verdict == "violated"
    assert Sign("-")(Outcome(0.0), Outcome(0.1, 0.1)).verdict == "inconclusive"
    k = np.arange(3)
    bound = Outcome(1.0, k=k, curve=np.array([3.0, 2.0, 1.0]), curve_se=np.zeros(3))
    assert Bound()(bound, Outcome(0.5, k=k, curve=np.array([2.9, 1.0, 0.5]), curve_se=np.full(3, 0.01))).verdict == "holds"
    assert Bound()(bound, Outcome(1.5, k=k, curve=np.array([2.9, 1.0, 1.5]), curve_se=np.full(3, 0.01))).verdict == "violated"
    assert Bound()(Outcome(1.0, vacuous=True, reason="flat"), Outcome(0.5)).verdict == "vacuous"
    assert Zero(1e-12)(Outcome(0.0), Outcome(1e-13)).verdict == "holds"
    assert Zero(1e-12)(Outcome(0.0), Outcome(1e-9)).verdict == "violated"
    assert Finding()(Outcome(0.3), Outcome(0.1, 0.01)).verdict == "finding"


# ------------------------------------------------------------------ error bars that mean what they say
SEEDS = 12
SPREAD_CONFIG = dict(task="triangle", teacher="onehot", gamma=0.1, init="optimum", steps=3000, chains=32, eval_n=400,
                     eval_every=50)


def _spread(values: np.ndarray, ses: np.ndarray) -> float:
    """sum_i (v_i - weighted mean)^2 / se_i^2: chi^2 with SEEDS - 1 degrees of freedom when the SEs are right."""
    w = 1.0 / ses**2
    return float(np.sum(w * (values - np.sum(w * values) / np.sum(w)) ** 2))


def test_reported_excess_risk_se_matches_the_spread_over_seeds():
    """One `bkd run` configuration over 12 seeds (each its own chains AND evaluation sample): the
    scatter of the stationary excess risk agrees with its reported SEs (chi^2, two-sided 0.1 %).
    With the across-chain SE alone (the old error bar, without the evaluation-sample term) the same
    scatter is far outside: at 32 chains and 400 evaluation points the evaluation sample dominates."""
    entries = [run(**SPREAD_CONFIG, seed=s).summary()["quantities"]["excess_risk"] for s in range(SEEDS)]
    v = np.array([e["value"] for e in entries])
    se = np.array([e["se"] for e in entries])
    se_chains = np.array([e["se_chains"] for e in entries])
    lo, hi = sps.chi2.ppf([0.0005, 0.9995], SEEDS - 1)
    assert lo < _spread(v, se) < hi, (_spread(v, se), lo, hi)
    assert _spread(v, se_chains) > hi, _spread(v, se_chains)
    assert all("evaluation" in e["eval_error"] for e in entries)


def test_stationarity_fails_a_run_whose_slowest_mode_has_not_relaxed():
    """dist2 weighs every mode equally: started far off theta* at a small step size, the slow
    mode (relaxation time 1/(2 gamma mu) ~ 3e4 steps) is still far from stationary; the quantity
    is reported not stationary with the reason, while the fast-relaxing excess risk at a large
    step size is stationary."""
    slow = run(task="triangle", teacher="onehot", gamma=0.001, init="perturbed", init_scale=2.0, steps=2000, chains=16,
               eval_every=50).summary()["quantities"]["dist2"]
    assert slow["stationary"] is False and ("relaxed" in slow["stationary_reason"] or "drift" in slow["stationary_reason"])
    fast = run(task="triangle", teacher="onehot", gamma=0.2, init="optimum", steps=4000, chains=16,
               eval_every=50).summary()["quantities"]["excess_risk"]
    assert fast["stationary"] is True, fast["stationary_reason"]


def test_relaxation_check_catches_what_the_drift_test_misses():
    """A flat (drift-free) window still fails when H's slowest mode has relaxed too little by the
    window's start: the drift test alone cannot see it (DESIGN 2.9)."""
    from bkd_theory.records import Run, versions

    rng = np.random.default_rng(0)
    steps = np.arange(0, 1001, 50)
    vals = 1.0 + 0.01 * rng.standard_normal((len(steps), 32))
    vals[0] = 0.0
    relax = lambda decay: {"eigenvalues": np.array([1e-4, 1.0]), "decay": {int(s): decay * s for s in steps}, "method": "t"}  # noqa: E731
    make = lambda decay: Run({"steps": 1000}, 0, versions(), 1.0, np.full(32, -1), np.zeros((32, 2)), np.arange(32),  # noqa: E731
                             {"dist2": (steps, vals)}, relaxation=relax(decay))
    bad = make(0.01).summary()["quantities"]["dist2"]
    assert bad["stationary"] is False and "not relaxed" in bad["stationary_reason"]
    assert abs(bad["drift"]) <= 4 * bad["drift_se"]  # the drift test alone passes it
    assert make(100.0).summary()["quantities"]["dist2"]["stationary"] is True
