"""Contract: every registered target law through one battery (DESIGN 2.2).

Each law must have examples in `cases.LAW_EXAMPLES`. For every example:
- the spec round-trips (`parse_teacher(str(t)) == t`);
- sample moments match `mean`, `cov` and (label-based laws) `label_cross_cov`: every entry within
  4 SE (`moments.check_moments`, 10^4 draws at two fixed p, one with a tiny entry);
- a declared closed form (`cov_form`) equals `cov(p)` to rounding;
- draws sum to 1 when the law says so.
"""
from __future__ import annotations

import numpy as np
import pytest

from bkd_theory import teachers as T
from cases import LAW_EXAMPLES
from moments import PS, check_moments

EXAMPLES = [(name, spec) for name in T.LAWS.names() for spec in LAW_EXAMPLES.get(name, [None])]


@pytest.mark.parametrize("name", T.LAWS.names())
def test_every_law_has_examples(name):
    assert LAW_EXAMPLES.get(name), f"add examples of the law {name!r} to tests/cases.py LAW_EXAMPLES"


@pytest.mark.parametrize("name,spec", EXAMPLES, ids=[s or n for n, s in EXAMPLES])
def test_spec_moments_and_closed_form(name, spec):
    if spec is None:
        pytest.skip("no example")
    teacher = T.parse_teacher(spec)
    assert T.parse_teacher(str(teacher)) == teacher and teacher.spec == spec
    p = np.stack(list(PS["K3"] for _ in range(2)))
    form = teacher.cov_form()
    if form is not None:
        np.testing.assert_allclose(form.matrix(p), teacher.cov(p), rtol=0, atol=1e-12)
    for pname, pv in PS.items():
        assert check_moments(spec, pv, n=10_000) <= 4.0, pname
    if teacher.sums_to_one:
        rng = np.random.default_rng(0)
        t = teacher.sample(np.tile(PS["K3"], (100, 1)), rng.choice(3, size=100, p=PS["K3"]), rng)
        np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-12)
