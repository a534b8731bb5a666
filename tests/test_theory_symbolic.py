"""sympy derivations (DESIGN 2.7): the one-step recursions of T1-T4 and the Dirichlet identity E8."""
from __future__ import annotations

import sympy as sp

from bkd_theory.theory import symbolic as sym


def test_recursions_reproduce_design_step_sizes_and_neighborhoods():
    cmp = sym.compare_with_design()
    for name in ("T1", "T2", "T3", "T4"):
        assert cmp[name]["gamma_max"], name
        assert cmp[name]["neighborhood"], name
        assert cmp[name]["rate_within_stated_on_range"], name


def test_distance_recursions_have_the_stated_rate():
    for name in ("T1", "T3"):
        rec = sym.recursions()[name]
        assert sp.simplify(rec.rate - (1 - sym.gamma * sym.mu)) == 0
        assert sp.simplify(rec.sharp_neighborhood - rec.neighborhood) == 0
    t3 = sym.recursions()["T3"]
    assert sp.simplify(t3.additive - 2 * sym.gamma**2 * sym.sigma2) == 0
    assert sp.simplify(t3.drop - 2 * sym.gamma * (2 * sym.calL * sym.gamma - 1)) == 0


def test_function_recursions_are_sharper_than_stated():
    """Finding: the descent-lemma recursion contracts by 1 - 2 gamma mu + c L gamma^2 calL (c = 1, 2),
    strictly below E14/E16's 1 - gamma mu inside the range, and its own T4 neighborhood is
    L gamma sigma^2 / (2 (mu - L gamma calL)), at most E16's L gamma sigma^2 / mu."""
    g, mu, L, calL, s2 = sym.gamma, sym.mu, sym.L, sym.calL, sym.sigma2
    recs = sym.recursions()
    assert sp.simplify(recs["T2"].rate - (1 - 2 * g * mu + L * g**2 * calL)) == 0
    assert sp.simplify(recs["T4"].rate - (1 - 2 * g * mu + 2 * L * g**2 * calL)) == 0
    sharp = recs["T4"].sharp_neighborhood
    assert sp.simplify(sharp - L * g * s2 / (2 * (mu - L * g * calL))) == 0
    assert sp.simplify(sharp.subs(g, recs["T4"].gamma_max) - recs["T4"].neighborhood.subs(g, recs["T4"].gamma_max)) == 0
    assert sp.limit(sharp / recs["T4"].neighborhood, g, 0) == sp.Rational(1, 2)


def test_dirichlet_identity_k3():
    out = sym.dirichlet_identity(3)
    assert out["cov_residual"] == sp.zeros(3, 3)
    assert out["mean_residual"] == sp.zeros(3, 1)
    assert out["sigma2_residual"] == 0


def test_dirichlet_moment_formula_by_integration():
    for name, (integral, formula) in sym.dirichlet_moment_by_integration((2, 4, 3)).items():
        assert sp.simplify(integral - formula) == 0, name
