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
    return bounds.THEOREMS[theorem].curve(gamma, bounds.Constants(mu=mu, calL=calL, L=L, sigma2=s2), x0, k, form)


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
        gm = bounds.THEOREMS[theorem].admissible(bounds.Constants(mu=mu, calL=calL, L=L))
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
    gm = bounds.THEOREMS[theorem].admissible(bounds.Constants(mu=mu, calL=calL, L=L))
    _call(theorem, gm, mu, L, calL, 1.0, 1.0, [0, 1], "theorem")  # the edge is admissible
    with pytest.raises(ValueError, match=rf"gamma=.*outside the admissible range of {theorem}.*\(0, "):
        _call(theorem, gm * 1.001, mu, L, calL, 1.0, 1.0, [0, 1], "theorem")
    with pytest.raises(ValueError, match="gamma"):
        _call(theorem, -gm, mu, L, calL, 1.0, 1.0, [0, 1], "theorem")


def test_step_size_ranges_and_neighborhoods():
    mu, L, calL, s2 = 0.1, 2.0, 8.0, 3.0
    c = bounds.Constants(mu=mu, calL=calL, L=L, sigma2=s2)
    T = bounds.THEOREMS
    assert T["T1"].admissible(c) == 2 * T["T3"].admissible(c)
    assert T["T2"].admissible(c) == pytest.approx(mu / (L * calL))
    assert T["T3"].neighborhood(0.01, c) == pytest.approx(2 * 0.01 * s2 / mu)
    assert T["T4"].neighborhood(0.001, c) == pytest.approx(L * 0.001 * s2 / mu)
    b = T["T3"].curve(0.01, c, 1.0, np.arange(3))
    assert b.values[0] == pytest.approx(1.0 + 2 * 0.01 * s2 / mu) and b.quantity == "dist2"
    with pytest.raises(ValueError, match="k must be"):
        T["T1"].curve(0.01, c, 1.0, [0.5])
    with pytest.raises(ValueError, match="theorem"):
        bounds.theorem("T5")
