"""The one place where a seed becomes random generators (STYLE 9).

Streams are named and independent, built from `numpy.random.SeedSequence` spawn keys:
- run-wide streams (evaluation samples, shared training sets): spawn key `(0, i)`;
- chain `r`'s streams: spawn key `(1, r, i)`.
So chain `r` draws the same numbers whether it runs alone or beside other chains.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

STREAM_NAMES = ("data", "teacher", "sgd", "init", "probe")
_RUN_NAMESPACE, _CHAIN_NAMESPACE = 0, 1


@dataclass(frozen=True)
class Streams:
    """Independent generators for one run or one chain.

    Attributes:
        data: training sets and online inputs.
        teacher: teacher noise (fresh and frozen targets).
        sgd: minibatch index sampling.
        init: initial parameters and perturbations.
        probe: evaluation samples and Monte Carlo inside instruments.
        torch: a `torch.Generator` for torch-side randomness (network init, dropout).
    """

    data: np.random.Generator
    teacher: np.random.Generator
    sgd: np.random.Generator
    init: np.random.Generator
    probe: np.random.Generator
    torch: torch.Generator


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _build(ss: np.random.SeedSequence) -> Streams:
    children = ss.spawn(len(STREAM_NAMES) + 1)
    gens = {name: np.random.Generator(np.random.PCG64(c)) for name, c in zip(STREAM_NAMES, children)}
    tseed = int(children[-1].generate_state(1, np.uint64)[0]) & ((1 << 63) - 1)
    return Streams(**gens, torch=torch.Generator().manual_seed(tseed))


def run_streams(seed: int) -> Streams:
    """Return the run-wide streams for `seed` (shared by all chains)."""
    return _build(np.random.SeedSequence(_check_seed(seed), spawn_key=(_RUN_NAMESPACE,)))


def chain_streams(seed: int, chain: int) -> Streams:
    """Return chain `chain`'s streams for `seed`; independent of how many chains run."""
    if isinstance(chain, bool) or not isinstance(chain, (int, np.integer)) or chain < 0:
        raise ValueError(f"chain must be a non-negative integer, got {chain!r}")
    return _build(np.random.SeedSequence(_check_seed(seed), spawn_key=(_CHAIN_NAMESPACE, int(chain))))


def generator(seed: int, *key: int) -> np.random.Generator:
    """Return a numpy generator for `seed` under an extra spawn-key path `key` (namespace 2).

    For one-off uses (task self-checks, Monte Carlo constants) that must not collide with run streams.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(_check_seed(seed), spawn_key=(2, *key))))
