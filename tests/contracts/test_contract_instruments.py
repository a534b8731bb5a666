"""Contract: every registered instrument through one battery (STYLE 1; DESIGN 2.9).

- its declared needs are known and it returns one value per chain for each quantity;
- chain 2 of a 4-chain run records the same numbers as that chain run alone (bit for bit);
- adding other instruments (or reordering them) changes none of its numbers.
"""
from __future__ import annotations

import numpy as np
import pytest

from bkd_theory import sgd
from bkd_theory.instruments import INSTRUMENTS, Every, check_needs

WHEN = Every(25, last=60)
KW = dict(task="triangle", teacher="dirichlet:2", gamma=0.05, steps=60, seed=3, init="perturbed")


def _make(name):
    cls = INSTRUMENTS.get(name).obj
    probe = {"probe_size": 16} if "probe_size" in getattr(cls, "__dataclass_fields__", {}) else {}
    return cls(WHEN, **probe)


@pytest.mark.parametrize("name", INSTRUMENTS.names())
def test_needs_and_shapes(name):
    ins = _make(name)
    check_needs(frozenset(ins.needs), ins.name)
    run = sgd.run(chains=3, instruments=[ins], **KW)
    assert run.quantities and all(run.values(q)[1].shape == (4, 3) for q in run.quantities)


@pytest.mark.parametrize("name", INSTRUMENTS.names())
def test_chain_split_and_other_instruments_change_nothing(name):
    alone_ins = _make(name)
    others = [_make(n) for n in INSTRUMENTS.names() if n != name]
    solo = sgd.run(chains=4, instruments=[alone_ins], **KW)
    crowd = sgd.run(chains=4, instruments=[*others[::-1], _make(name), *others], **KW)
    single = sgd.run(chains=1, first_chain=2, instruments=[_make(name)], **KW)
    for q in solo.quantities:
        np.testing.assert_array_equal(solo.values(q)[1], crowd.values(q)[1], err_msg=q)
        np.testing.assert_array_equal(single.values(q)[1][:, 0], solo.values(q)[1][:, 2], err_msg=q)
