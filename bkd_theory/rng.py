"""The one place where a seed becomes random generators (STYLE 9), and the one table of stream keys.

Every generator is `PCG64(SeedSequence(seed, spawn_key=KEY))`. Keys never overlap, so streams are
independent:
- run-wide streams (the evaluation sample, shared by all chains): `run_streams(seed)`, key `(0,)`;
- chain `r`'s streams: `chain_streams(seed, r)`, key `(1, r)`. So chain r draws the same numbers
  whether it runs alone or beside other chains; the torch data feed's two torch generators are the
  next children of the same key, `(1, r, 6)` and `(1, r, 7)` (`torch_feed_generators`);
- an instrument's (or a shared need's) own stream for chain r: `instrument_stream(seed, name, r)`,
  key `(3, crc32(name), r)`: adding or reordering instruments changes no other instrument's numbers;
- one-off consumers (theory's Monte Carlo, teacher fitting, figures, claims) by name from `KEYS`:
  `stream(seed, "theory.inputs", 0)`, key `KEYS[name] + (0,)`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

#: the chain streams, in spawn order (the order is part of the stream layout)
STREAM_NAMES = ("data", "teacher", "sgd", "init", "probe")

#: every named one-off consumer and its spawn-key prefix (namespace 2). Figures use
#: "figure.F<n>" -> (2, 100 + n). A name not in this table is refused.
KEYS: dict[str, tuple[int, ...]] = {
    "adhoc": (2,),                    # tests and notebooks: stream(seed, "adhoc", i, ...)
    "teacher.fit": (2, 31),           # training trained teachers, member m: (..., m)
    "teacher.quality": (2, 32),       # the evaluation sample of teacher reports (0) and its bootstrap (1)
    "teacher.laplace_draws": (2, 33), # fixed last-layer weight draws of a Monte Carlo Laplace predictive
    "teacher.clipped_design": (2, 34),  # the fixed scrambled Sobol design of the clipped law's moments
    "teacher.posterior_draws": (2, 35),  # posterior draws of trained teachers: VI's fixed predictive (1), E24 moments (2)
    "theory.inputs": (2, 50),         # Monte Carlo inputs of the theory (key 0: moments, 1: oracle, 2: ball, ...)
    "theory.targets": (2, 51),        # Monte Carlo targets of the theory
    "theory.ball": (2, 52),           # points around theta* (local constants, empirical calL)
    "theory.lyapunov": (2, 53),       # E19 replicas
    "claims": (2, 60),                # the claims' own Monte Carlo
}
_RUN, _CHAIN, _INSTRUMENT = 0, 1, 3


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_index(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def key(name: str) -> tuple[int, ...]:
    """The spawn-key prefix of the named consumer (`KEYS`, or "figure.F<n>")."""
    if name in KEYS:
        return KEYS[name]
    if name.startswith("figure.F") and name[8:].isdigit():
        return (2, 100 + int(name[8:]))
    raise ValueError(f"stream key {name!r} is not in the table rng.KEYS; known: {', '.join(KEYS)}, figure.F<n>")


def name_key(name: str) -> int:
    """A stable non-negative integer for a name (CRC-32), the same on every machine and run."""
    return zlib.crc32(str(name).encode("utf-8")) & 0x7FFFFFFF


def _generator(seed: int, spawn_key: tuple[int, ...]) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(_check_seed(seed), spawn_key=spawn_key)))


def stream(seed: int, name: str, *index: int) -> np.random.Generator:
    """The generator of the named consumer (`KEYS`) for `seed` under the extra integer path `index`."""
    return _generator(seed, (*key(name), *(_check_index("index", i) for i in index)))


def instrument_stream(seed: int, name: str, chain: int) -> np.random.Generator:
    """Chain `chain`'s stream of the instrument (or shared need) `name`; independent of R and of
    every other instrument."""
    return _generator(seed, (_INSTRUMENT, name_key(name), _check_index("chain", chain)))


@dataclass(frozen=True)
class Streams:
    """Independent generators for one run or one chain.

    Attributes:
        data: training sets and online inputs (run-wide: the evaluation sample).
        teacher: teacher noise (fresh and frozen targets).
        sgd: minibatch index sampling.
        init: initial parameters and perturbations.
        probe: reserved (instruments draw from `instrument_stream`); kept so that the other streams
            keep their numbers.
        torch: a `torch.Generator` for torch-side randomness (network init, dropout).
    """

    data: np.random.Generator
    teacher: np.random.Generator
    sgd: np.random.Generator
    init: np.random.Generator
    probe: np.random.Generator
    torch: torch.Generator


def _torch_generator(ss: np.random.SeedSequence) -> torch.Generator:
    return torch.Generator().manual_seed(int(ss.generate_state(1, np.uint64)[0]) & ((1 << 63) - 1))


def _build(ss: np.random.SeedSequence) -> Streams:
    children = ss.spawn(len(STREAM_NAMES) + 1)
    gens = {name: np.random.Generator(np.random.PCG64(c)) for name, c in zip(STREAM_NAMES, children)}
    return Streams(**gens, torch=_torch_generator(children[-1]))


def run_streams(seed: int) -> Streams:
    """Return the run-wide streams for `seed` (shared by all chains)."""
    return _build(np.random.SeedSequence(_check_seed(seed), spawn_key=(_RUN,)))


def chain_streams(seed: int, chain: int) -> Streams:
    """Return chain `chain`'s streams for `seed`; independent of how many chains run."""
    return _build(np.random.SeedSequence(_check_seed(seed), spawn_key=(_CHAIN, _check_index("chain", chain))))


def torch_feed_generators(seed: int, chain: int) -> tuple[torch.Generator, torch.Generator]:
    """Chain `chain`'s torch generators of the torch data feed: (inputs and labels, teacher noise),
    children 6 and 7 of the chain's key (after `STREAM_NAMES` and `Streams.torch`); independent of
    every other stream and of how many chains run. CPU generators, so a page is the same on every device."""
    base = (_CHAIN, _check_index("chain", chain))
    first = len(STREAM_NAMES) + 1
    return tuple(_torch_generator(np.random.SeedSequence(_check_seed(seed), spawn_key=(*base, first + j)))
                 for j in range(2))  # type: ignore[return-value]


def generator(seed: int, *key_path: int) -> np.random.Generator:
    """`stream(seed, "adhoc", *key_path)`: a one-off generator for tests and notebooks."""
    return stream(seed, "adhoc", *key_path)
