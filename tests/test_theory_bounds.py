"""T1-T4 (E13-E16): numpy bounds == their sympy derivation; refusal outside the step-size ranges."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from bkd_theory import rng
from bkd_theory.theory import bounds, symbolic

RECS = symbolic.recursions()
SYMS = (symbolic.gamma, symbolic.mu, symbolic.L, symbolic.calL, symbolic.sigma2, symbolic.k, symbolic.x0)


def _random_constants(gen):
    mu = gen.uniform(0.01, 1.0)
    L = mu * gen.uniform(1.0, 50.0)
    calL = L * gen.uniform(1.0, 20.0)
    return mu, L, calL, gen.uniform(0.0, 3.0), gen.uniform(0.1, 5.0)


def _call(theorem, gamma, mu, L, calL, s2, x0, k, form):
    if theorem == "T1":
        return bounds.bound_t1(gamma, mu=mu, calL=calL, dist0=x0, k=k, form=form)
    if theorem == "T2":
        return bounds.bound_t2(gamma, mu=mu, L=L, calL=calL, gap0=x0, k=k, form=form)
    if theorem == "T3":
        return bounds.bound_t3(gamma, mu=mu, calL=calL, sigma2=s2, dist0=x0, k=k, form=form)
    return bounds.bound_t4(gamma, mu=mu, L=L, calL=calL, sigma2=s2, gap0=x0, k=k, form=form)


@pytest.mark.parametrize("theorem", bounds.THEOREMS)
def test_numpy_bounds_equal_sympy(theorem):
    rec = RECS[theorem]
    theorem_form = sp.lambdify(SYMS, rec.bound, "numpy")
    recursion_form = sp.lambdify(SYMS, rec.unrolled, "numpy")
    gmax = sp.lambdify(SYMS[1:4], rec.gamma_max, "numpy")
    gen = rng.generator(0, 10)
    k = np.array([0, 1, 5, 50, 500, 5000])
    for _ in range(25):
        mu, L, calL, s2, x0 = _random_constants(gen)
        gm = bounds.gamma_max(theorem, mu=mu, L=L, calL=calL)
        assert gm == pytest.approx(gmax(mu, L, calL), rel=1e-12)
        gamma = gm * gen.uniform(0.01, 1.0)
        for form, ref in (("theorem", theorem_form), ("recursion", recursion_form)):
            b = _call(theorem, gamma, mu, L, calL, s2, x0, k, form)
            np.testing.assert_allclose(b.values, ref(gamma, mu, L, calL, s2, k.astype(float), x0), rtol=1e-12)
        sharp = _call(theorem, gamma, mu, L, calL, s2, x0, k, "recursion")
        stated = _call(theorem, gamma, mu, L, calL, s2, x0, k, "theorem")
        assert np.all(sharp.values <= stated.values * (1 + 1e-12))  # the recursion is never looser


@pytest.mark.parametrize("theorem", bounds.THEOREMS)
def test_bounds_refuse_gamma_outside_their_range(theorem):
    mu, L, calL = 0.1, 1.0, 4.0
    gm = bounds.gamma_max(theorem, mu=mu, L=L, calL=calL)
    _call(theorem, gm, mu, L, calL, 1.0, 1.0, [0, 1], "theorem")  # the edge is admissible
    with pytest.raises(ValueError, match=rf"gamma=.*outside the admissible range of {theorem}.*\(0, "):
        _call(theorem, gm * 1.001, mu, L, calL, 1.0, 1.0, [0, 1], "theorem")
    with pytest.raises(ValueError, match="gamma"):
        _call(theorem, -gm, mu, L, calL, 1.0, 1.0, [0, 1], "theorem")


def test_step_size_ranges_and_neighborhoods():
    mu, L, calL, s2 = 0.1, 2.0, 8.0, 3.0
    assert bounds.gamma_max("T1", calL=calL) == 2 * bounds.gamma_max("T3", calL=calL)
    assert bounds.gamma_max("T2", mu=mu, L=L, calL=calL) == pytest.approx(mu / (L * calL))
    assert bounds.neighborhood("T3", 0.01, mu=mu, calL=calL, sigma2=s2) == pytest.approx(2 * 0.01 * s2 / mu)
    assert bounds.neighborhood("T4", 0.001, mu=mu, L=L, calL=calL, sigma2=s2) == pytest.approx(L * 0.001 * s2 / mu)
    b = bounds.bound_t3(0.01, mu=mu, calL=calL, sigma2=s2, dist0=1.0, k=np.arange(3))
    assert b.values[0] == pytest.approx(1.0 + 2 * 0.01 * s2 / mu) and b.quantity == "dist2"
    with pytest.raises(ValueError, match="k must be"):
        bounds.bound_t1(0.01, mu=mu, calL=calL, dist0=1.0, k=[0.5])
    with pytest.raises(ValueError, match="theorem"):
        bounds.gamma_max("T5", calL=calL)
