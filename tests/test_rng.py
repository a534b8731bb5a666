"""Seeds become independent, reproducible streams in one place (STYLE 9)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bkd_theory import rng


def test_same_seed_same_numbers_bit_for_bit():
    a, b = rng.chain_streams(7, 3), rng.chain_streams(7, 3)
    for name in rng.STREAM_NAMES:
        assert np.array_equal(getattr(a, name).standard_normal(5), getattr(b, name).standard_normal(5))
    assert torch.equal(torch.randn(4, generator=a.torch), torch.randn(4, generator=b.torch))


def test_streams_differ_across_names_chains_and_run():
    draws = {}
    for key, s in {"run": rng.run_streams(0), "c0": rng.chain_streams(0, 0), "c1": rng.chain_streams(0, 1)}.items():
        for name in rng.STREAM_NAMES:
            draws[(key, name)] = getattr(s, name).standard_normal(3).tobytes()
    assert len(set(draws.values())) == len(draws)


def test_chain_stream_equals_spawned_child():
    # chain r's streams depend on (seed, r) only, so a chain alone draws what it draws in a batch
    ss = np.random.SeedSequence(11, spawn_key=(1, 4)).spawn(len(rng.STREAM_NAMES) + 1)[0]
    assert np.array_equal(np.random.Generator(np.random.PCG64(ss)).random(3), rng.chain_streams(11, 4).data.random(3))


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_bad_seed_is_rejected(bad):
    with pytest.raises(ValueError, match="seed"):
        rng.run_streams(bad)
