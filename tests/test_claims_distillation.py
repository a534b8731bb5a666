"""The distillation claims (E20, E21): each agrees with its own prediction and disagrees with a
deliberately wrong formula (DESIGN 2.10). Small configurations on `triangle`, float64, fixed seeds;
the verdicts use Z = 4 combined SE (`verdicts.Equal`)."""
from __future__ import annotations

import pytest

from bkd_theory import claims
from bkd_theory.claims import recipes
from bkd_theory.verdicts import Outcome


def _default(claim_id: str) -> claims.Claim:
    (claim,) = [c for c in claims.defaults() if c.id == claim_id]
    return claim


def test_sigma2_cross_coefficient_and_its_omission():
    """The label cross term c of mixture:lam:(mixture:0.5:dirichlet:1) (its base reads y) agrees with
    E20; dropping it (c = 0, the independent-teacher formula) disagrees; the five lam points fit the
    quadratic (chi^2 with 2 dof below 4 SE of its mean, 2 + 4 * 2)."""
    claim = _default("E20-sigma2-c")
    rec = claim.check()
    assert rec.verdict.verdict == "agrees", rec.to_dict()
    assert rec.measured.info["chi2"] < 10.0
    assert claim.check(lambda cfg: Outcome(0.0, 0.0)).verdict.verdict == "disagrees"


def test_adam_bcp_threshold_is_eps_times_e19():
    """Exact BCPs, beta1 = 0, eps = 0.1: the growth rate changes sign at gamma = eps gamma_E19; the
    unscaled E19 threshold (as if Adam were SGD at step gamma) disagrees."""
    claim = _default("E21-bcp")
    rec = claim.check()
    assert rec.verdict.verdict == "agrees", rec.to_dict()
    e19 = rec.predicted.info["gamma_E19"]
    assert claim.check(lambda cfg: Outcome(e19, 0.0)).verdict.verdict == "disagrees"


def test_adam_neighborhood_is_e21_not_e17():
    """Adam on additive:0.02 at gamma = 0.01 (32 chains): stationary E[F - F*] agrees with E21 and
    disagrees with SGD's E17 at the same gamma (about 5x smaller); the ratio is reported."""
    rec = claims.make("E21", "E21-test", teacher="additive:0.02", gamma=0.01, chains=32).check()
    assert rec.verdict.verdict == "agrees", rec.to_dict()
    assert rec.measured.info["measured_over_E17"] > 3.0
    e17 = lambda cfg: Outcome(recipes.theory({**cfg, "optimizer": "sgd"}).neighborhood_excess_risk.value, 0.0)  # noqa: E731
    assert rec.claim.check(e17).verdict.verdict == "disagrees"


def test_best_lam_finite_n_is_on_the_h_inverse_scale():
    """Finite n: the measured best lam agrees with lambda_star_n = a'/(a' + b') (tr H^+ C scale) and
    disagrees with the gradient-scale lambda_var = a/(a + b) of the stationary regime."""
    claim = _default("E20-lambda-n-additive")
    rec = claim.check()
    assert rec.verdict.verdict == "agrees", rec.to_dict()
    lam_var = lambda cfg: Outcome(recipes.theory({**cfg, "lam": 1.0}).lambda_var.value, 0.0)  # noqa: E731
    assert claim.check(lam_var).verdict.verdict == "disagrees"


def test_best_lam_stationary_and_its_margin():
    """Stationary: the measured best lam agrees with lambda_star and disagrees with the finite-n
    lambda_star_n (n = 2000); the optimum beats lam = 0 by the E20 margin."""
    claim = _default("E20-lambda-additive")
    rec = claim.check()
    assert rec.verdict.verdict == "agrees", rec.to_dict()
    lam_n = lambda cfg: Outcome(recipes.theory({**cfg, "lam": 1.0, "n": 2000}).lambda_star_n.value, 0.0)  # noqa: E731
    assert claim.check(lam_n).verdict.verdict == "disagrees"
    margin = _default("E20-margin-0").check()
    assert margin.verdict.verdict == "agrees", margin.to_dict()


@pytest.mark.parametrize("kind, bad, name", [
    ("E20-sigma2", dict(coef="d"), "coef"), ("E20-lambda", dict(lams=(0.5, 1.0), seeds=(1, 2)), "lams"),
])
def test_bad_claim_configurations_are_errors_naming_the_key(kind, bad, name):
    rec = claims.make(kind, "bad", **bad).check()
    assert rec.verdict.verdict == "error" and name in rec.verdict.detail
