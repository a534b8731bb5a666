"""F1 (learning curves, loss noise), F9 (trained teachers in the paper's protocol) and F13 (teachers
sampled per visit, the data budget) in quick mode, and the recipes of `claims.learning` they are built on.

The quick figures are deterministic (seeded chains, single-threaded), so every non-finding claim's
verdict is asserted exactly: a change in a recipe, a rule or a setting that moves a verdict fails here.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bkd_theory import claims, stats
from bkd_theory.claims import learning as L
from bkd_theory.reproduce import CLAIM_COLUMNS
from bkd_theory.reproduce.base import FRAME_COLUMNS

F1_VERDICTS = {
    "noise-onehot-over-dirichlet:0.5": "inconclusive",
    "noise-dirichlet:0.5-over-dirichlet:5": "holds",
    "noise-dirichlet:5-over-bcp": "holds",
    "noise-ratio-above-linear-law": "inconclusive",
    "noise-ratio-below-quadratic-law": "holds",
    "E8-label-term": "agrees",
    "E8-linear-student-excess-risk": "agrees",
    "val-loss-onehot-minus-bcp": "holds",
    "accuracy-bcp-minus-onehot": "inconclusive",
    "accuracy-bayes-onehot": "holds",
    "accuracy-bayes-dirichlet:0.5": "holds",
    "accuracy-bayes-dirichlet:5": "holds",
    "accuracy-bayes-bcp": "holds",
}
F9_VERDICTS = {
    **{f"teacher-kl-{t}-{m}-{w}": "holds" for t in ("vi", "laplace") for m in ("in-sample", "out-of-sample")
       for w in ("train", "fresh")},
    **{f"E23-{t}-out-of-sample": "agrees" for t in ("deterministic", "vi", "laplace")},
    "excess-risk-deterministic-minus-vi": "inconclusive",
    "excess-risk-deterministic-minus-laplace": "inconclusive",
    "excess-risk-onehot-minus-vi": "inconclusive",
    "noise-deterministic-over-vi": "inconclusive",
    "noise-deterministic-over-laplace": "inconclusive",
}
F9_FINDINGS = ({f"E23-{t}-in-sample" for t in ("deterministic", "vi", "laplace")}
               | {f"paper-{w}-{b}" for w in ("noise", "accuracy") for b in ("vi", "laplace")})
F13_VERDICTS = {"E24-vi-S1": "agrees", "E24-vi-S12": "agrees", "E24-draws-vi": "agrees",
                "E23-deterministic-n1000": "agrees", "E23-vi-n1000": "agrees"}
CASES = {"F1": (F1_VERDICTS, set(), ("noise", "accuracy", "investigation"), {"se_seeds", "seed", "claim"}),
         "F9": (F9_VERDICTS, F9_FINDINGS, ("teachers", "students"), {"mode", "claim"}),
         "F13": (F13_VERDICTS, set(), (), {"claim", "stationary"})}


@pytest.fixture(scope="module")
def made(quick_figure) -> dict:
    """Each figure in quick mode, made once per test session (`conftest.quick_figure`, shared with the
    figure contract): fig_id -> (out dir, paths, Result)."""
    return {fig_id: quick_figure(fig_id) for fig_id in CASES}


@pytest.mark.parametrize("fig_id", list(CASES))
def test_quick_verdicts_are_exact(made, fig_id):
    verdicts, findings, _, _ = CASES[fig_id]
    got = made[fig_id][2].verdicts()
    assert set(got) == set(verdicts) | findings
    assert {k: got[k] for k in verdicts} == verdicts
    assert all(got[k] == "finding" for k in findings)


@pytest.mark.parametrize("fig_id", list(CASES))
def test_quick_files_frame_and_claims(made, fig_id):
    out, paths, result = made[fig_id]
    _, _, tables, extra = CASES[fig_id]
    expected = [out / f"{fig_id}{ext}" for ext in (".png", ".csv", ".claims.csv", ".json")]
    assert set(expected + [out / f"{fig_id}.{t}.csv" for t in tables]) == set(paths)
    assert (out / f"{fig_id}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frame = pd.read_csv(out / f"{fig_id}.csv")
    assert tuple(frame.columns[:len(FRAME_COLUMNS)]) == FRAME_COLUMNS
    assert set(frame.columns[len(FRAME_COLUMNS):]) == extra
    assert np.isfinite(frame["value"]).all()
    table = pd.read_csv(out / f"{fig_id}.claims.csv")
    assert tuple(table.columns) == CLAIM_COLUMNS
    assert np.isfinite(table["measured"]).all() and (table["measured_se"] > 0).all()
    meta = json.loads((out / f"{fig_id}.json").read_text())
    assert meta["quick"] is True and len(meta["claims"]) == len(table)


def test_f1_tables(made):
    """The loss-noise table is normalised to bcp exactly; the accuracy table carries the exact Bayes
    accuracy, the eval-set size and SEs that include the evaluation-sample term."""
    out, _, _ = made["F1"]
    noise = pd.read_csv(out / "F1.noise.csv").set_index("teacher")
    assert noise.loc["bcp", "ratio_to_bcp"] == 1.0 and noise.loc["bcp", "ratio_to_bcp_se"] == 0.0
    assert list(noise["s"]) == [1.0, 1 / 1.5, 1 / 6, 0.0]
    acc = pd.read_csv(out / "F1.accuracy.csv")
    import synthetic

    assert (acc["bayes_accuracy"] == synthetic.make_task("paper", standardize=True).bayes_accuracy().value).all()
    assert (acc["eval_n"] == 1000).all()
    assert (acc["accuracy_se"] >= acc["accuracy_se_eval"]).all() and (acc["accuracy_se_eval"] > 0).all()
    inv = pd.read_csv(out / "F1.investigation.csv")
    assert set(inv["student"]) == {"mlp", "linear"} and set(inv["curve"]) == {"val_loss", "excess_risk", "label_term"}


def test_f9_teachers_against_the_truth(made):
    """Every (kind, mode, place) has KL > 0 against p with an SE over chains; the in-sample
    deterministic net is over-confident at its own training points and closer to p on fresh ones;
    the students' table has every student and the paper's 30 % beside the measured reduction."""
    out, _, result = made["F9"]
    teach = pd.read_csv(out / "F9.teachers.csv")
    assert set(teach["teacher"]) == {"deterministic", "vi", "laplace"} and (teach["kl"] > 0).all()
    assert set(teach["mode"]) == {"in-sample", "out-of-sample"} and set(teach["where"]) == {"train", "fresh"}
    det = teach[(teach["teacher"] == "deterministic") & (teach["mode"] == "in-sample")].set_index("where")
    assert det.loc["train", "overconfidence"] > 4 * det.loc["train", "overconfidence_se"]
    assert det.loc["train", "kl"] > det.loc["fresh", "kl"]
    students = pd.read_csv(out / "F9.students.csv")
    assert set(students["teacher"]) == {"deterministic", "vi", "laplace", "onehot", "bcp"}
    rec = result.record("paper-noise-vi")
    assert rec.predicted.value == L.PAPER_NOISE_REDUCTION and rec.verdict.verdict == "finding"


def test_f13_per_visit_and_budget(made):
    """F13's E24 points carry the VI teacher's draws S and their prediction; the 1/S fit is drawn."""
    out, _, result = made["F13"]
    frame = pd.read_csv(out / "F13.csv")
    draws = frame[frame["panel"] == "draws"]
    assert set(draws[draws["kind"] == "measured"]["x"]) == {1, 12}
    assert set(draws["kind"]) == {"measured", "E24", "a + b/S fit"}
    rec = result.record("E24-draws-vi")
    assert rec.measured.info["samples"] == [1.0, 12.0] and rec.predicted.value > 0


# ------------------------------------------------------------------ the recipes
def test_ratio_of_means():
    """Exact on a known case: with b constant the paired delta-method SE is std(a) / (sqrt(n) b)."""
    a, b = np.array([1.0, 2.0, 3.0, 6.0]), np.full(4, 2.0)
    r, se, n = stats.ratio_of_means(a, b)
    assert (r, n) == (1.5, 4)
    assert se == pytest.approx(np.std(a, ddof=1) / (2.0 * 2.0), rel=1e-12)  # rounding only
    assert math.isnan(stats.ratio_of_means(a[:1], b[:1])[0])


def test_label_scale_and_the_e8_powers():
    assert [L.label_scale(t) for t in ("onehot", "dirichlet:5", "bcp")] == [1.0, 1 / 6, 0.0]
    with pytest.raises(ValueError, match="E8 scaling"):
        L.label_scale("additive:0.1")
    base = {**L.F1_QUICK, "teacher": "dirichlet:0.5", "than": "dirichlet:5"}
    assert L._e8_predict({**base, "curve": "label_term"}).value == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(ValueError, match="realizable"):  # the MLP has no theta*: no quadratic law claimed
        L._e8_predict({**base, "curve": "excess_risk"})
    with pytest.raises(ValueError, match="no single power"):
        L._e8_predict({**base, "curve": "val_loss"})
    lin = {**L.LINEAR_ONLINE, "teacher": "onehot", "than": "dirichlet:5", "curve": "excess_risk"}
    assert L._e8_predict(lin).value == pytest.approx(6.0, rel=1e-12)


def test_run_key_ignores_claim_keys_and_defaults():
    """Claims that read the same run share it: claim-only keys and defaults spelled out do not change the key."""
    cfg = {**L.F1_QUICK}
    assert L.run_config({**cfg, "than": "bcp", "curve": "label_term", "gauge": "pinned"}) == L.run_config(cfg)
    assert L.run_config({**cfg, "teacher": "bcp"}) != L.run_config(cfg)
    trained = L.run_config({**L.F9_QUICK, "teacher": "trained:ensemble"})
    assert trained["teacher_n"] == L.F9_QUICK["teacher_n"] and "teacher_n" not in L.run_config(L.F9_QUICK)


def test_label_term_and_bayes_val_loss_at_the_optimum():
    """At theta* of the realizable linear student q = p on every eval point: the excess risk is 0, the
    validation loss is the eval set's -mean log p_y (`bayes_val_loss`), and the label term is their
    difference. float64: equal up to rounding (1e-12)."""
    cfg = {**L.LINEAR_ONLINE, "teacher": "bcp", "steps": 1, "chains": 2, "eval_every": 1, "eval_n": 300}
    r = L.run(cfg)
    val, risk, label = (L.curve(r, c)[1][0] for c in ("val_loss", "excess_risk", "label_term"))
    np.testing.assert_allclose(risk, 0.0, atol=1e-12)
    np.testing.assert_allclose(val, L.bayes_val_loss(cfg), rtol=1e-12)
    np.testing.assert_allclose(label, val - risk, rtol=1e-12)


def test_every_kind_of_this_module_is_registered_with_defaults():
    kinds = ("loss-noise-ratio", "E8-loss-noise", "accuracy-bayes", "paired-difference", "teacher-kl",
             "paper-noise", "paper-accuracy")
    for kind in kinds:
        spec = claims.KINDS.get(kind).obj
        assert spec.defaults, kind
        for cfg in spec.defaults.values():
            claims.make(kind, "x", **cfg).statement.format()  # the template fills from its own defaults
