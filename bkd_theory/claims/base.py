"""What a claim is, and the one registry of claim kinds (DESIGN 2.9, 4; STYLE "One definition per concept").

A claim kind (`register_claim("E17", ...)`) is a statement of the theory with its equation tag, a
prediction recipe `predict(config) -> Outcome` (value +- SE), a measurement recipe
`measure(config) -> Outcome` (value +- SE, with its stationarity) and a rule from
`bkd_theory.verdicts`. A `Claim` is one instance: a kind with a configuration (plain data) and an
id such as "E17-onehot-triangle". `bkd check` walks every kind's `defaults`; each figure makes its
own instances of the same kinds (its configurations); `figures/README.md` lists their records. So a
claim is defined once, and every consumer computes and judges it the same way.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from synthetic.registry import Registry

from ..verdicts import Outcome, Verdict

#: every claim kind, by name (its equation tag or proposition)
KINDS: Registry = Registry("claim")


@dataclass(frozen=True)
class Kind:
    """A kind of claim: how to predict, how to measure and how to judge it.

    Attributes:
        name: the registry key ("E17"). tags: DESIGN equation tags. statement: a template filled
            with the configuration (`str.format`). rule: a `verdicts` rule. predict, measure:
            config -> `Outcome`. defaults: {claim id: config} checked by `bkd check`. quick: the
            default ids cheap enough for `bkd check --quick`. paper: the paper's own statement, when
            the claim sets a measurement beside it.
    """

    name: str
    tags: tuple[str, ...]
    statement: str
    rule: Callable[[Outcome, Outcome], Verdict]
    predict: Callable[[Mapping[str, Any]], Outcome] = field(repr=False)
    measure: Callable[[Mapping[str, Any]], Outcome] = field(repr=False)
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    quick: tuple[str, ...] = ()


def register_claim(name: str, *, tags: tuple[str, ...], statement: str, rule: Any,
                   predict: Callable[[Mapping[str, Any]], Outcome], measure: Callable[[Mapping[str, Any]], Outcome],
                   defaults: Mapping[str, Mapping[str, Any]] | None = None, quick: tuple[str, ...] = ()) -> Kind:
    """Register a claim kind (see `Kind`) and return it."""
    kind = Kind(name, tuple(tags), statement, rule, predict, measure, dict(defaults or {}), tuple(quick))
    unknown = set(kind.quick) - set(kind.defaults)
    if unknown:
        raise ValueError(f"quick: {sorted(unknown)} are not default claims of {name}")
    KINDS.add(name, kind, help=f"[{', '.join(kind.tags)}] " + re.sub(r"\{(\w+)\}", r"<\1>", statement))
    return kind


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    return v


@dataclass(frozen=True)
class Claim:
    """One claim: a kind with a configuration. `check()` predicts, measures and judges it."""

    id: str
    kind: str
    config: Mapping[str, Any]

    @property
    def spec(self) -> Kind:
        return KINDS.get(self.kind).obj

    @property
    def statement(self) -> str:
        try:
            return self.spec.statement.format(**self.config)
        except (KeyError, IndexError, ValueError):
            return self.spec.statement

    def check(self, predict: Callable[[Mapping[str, Any]], Outcome] | None = None) -> "Record":
        """Predict, measure and judge (a ValueError in either recipe becomes verdict "error").

        Args:
            predict: another prediction recipe for the same measurement (a user's own theory, or a
                deliberately wrong formula in a test); default the kind's own.
        """
        t0 = time.perf_counter()
        try:
            pred = (predict or self.spec.predict)(self.config)
            meas = self.spec.measure(self.config)
            verdict = self.spec.rule(pred, meas)
        except ValueError as err:
            return Record(self, None, None, Verdict("error", None, str(err)), time.perf_counter() - t0)
        return Record(self, pred, meas, verdict, time.perf_counter() - t0)


@dataclass(frozen=True)
class Record:
    """A judged claim: the claim, both outcomes, the verdict and the time it took."""

    claim: Claim
    predicted: Outcome | None
    measured: Outcome | None
    verdict: Verdict
    seconds: float

    @property
    def failed(self) -> bool:
        return self.verdict.failed or self.verdict.verdict == "error"

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-ready row: claim, kind, statement, tags, configuration, predicted(_se),
        measured(_se), ratio, z, verdict, detail, stationary, seconds and details."""
        p, m = self.predicted, self.measured
        ratio = m.value / p.value if p is not None and m is not None and p.value and math.isfinite(p.value) else None
        return _plain({
            "claim": self.claim.id, "kind": self.claim.kind, "statement": self.claim.statement,
            "tags": list(self.claim.spec.tags), "configuration": dict(self.claim.config),
            "predicted": None if p is None else p.value, "predicted_se": None if p is None else p.se,
            "measured": None if m is None else m.value, "measured_se": None if m is None else m.se,
            "ratio": ratio, "z": self.verdict.z, "verdict": self.verdict.verdict, "detail": self.verdict.detail,
            "stationary": None if m is None else m.stationary, "seconds": round(self.seconds, 3),
            "details": {**(p.info if p else {}), **(m.info if m else {})},
        })


def make(kind: str, id: str | None = None, **config: Any) -> Claim:
    """A claim of `kind` with `config` (the kind's first default configuration filled in underneath)."""
    spec = KINDS.get(kind).obj
    base = dict(next(iter(spec.defaults.values()), {}))
    return Claim(id or f"{kind}-" + "-".join(str(v) for v in config.values()), spec.name, {**base, **config})


def check(kind: str, claim_id: str, config: Mapping[str, Any], **over: Any) -> Record:
    """`make(kind, claim_id, **config, **over).check()`: one claim of `kind` judged."""
    return make(kind, claim_id, **{**config, **over}).check()


def defaults(only: str | list[str] | None = None, quick: bool = False) -> list[Claim]:
    """The default claims of every kind (`bkd check`), or those whose id or kind is in `only`."""
    ids = [s.strip() for s in only.split(",") if s.strip()] if isinstance(only, str) else list(only or [])
    every = [Claim(cid, k.name, cfg) for e in KINDS for k in [e.obj] for cid, cfg in k.defaults.items()
             if not quick or cid in k.quick]
    if isinstance(only, str) and not ids:
        raise ValueError(f"only: no claim ids in {only!r}; known: {', '.join(c.id for c in every)}")
    unknown = [i for i in ids if not any(i in (c.id, c.kind) for c in every)]
    if unknown:
        raise ValueError(f"only: unknown claim id(s) {unknown}; known: {', '.join(c.id for c in every)}")
    chosen = [c for c in every if not ids or c.id in ids or c.kind in ids]
    if not chosen:
        raise ValueError(f"only: no {'quick ' if quick else ''}claim among {ids}")
    return chosen
