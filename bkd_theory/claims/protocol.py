"""Trained teachers in the paper's protocol (DESIGN 2.10): their quality against the true p chain by
chain, on the student's training points and on fresh points.

A configuration names a trained teacher by "trained:<kind>" with the fit keys of
`recipes.fit_config` (fit_mode in-sample, cross-fitted or out-of-sample, folds, teacher_widths,
teacher_kwargs, ...). `TEACHERS` maps the labels of the figures to (kind, teacher_kwargs): the
three Laplace structures are one kind with different `structure`.

Quality by chain (`chain_quality`): chain r's teacher (`claims.transfer.chain_components`: its own
in-sample teacher, its k fold teachers, or the one out-of-sample teacher) measured against p at
chain r's training points (the targets the student sees there; a cross-fitted point's target comes
from the fold teacher not fitted on it) and at `report_n` fresh points shared by every chain and
teacher (`teachers.quality`, stream "teacher.quality"; fold teachers are averaged per point, as
`teachers.quality.quality_at` does). Means over chains with the SE across chains (`teachers.quality.over_seeds`).

    teacher-kl   KL(p || p~_than) - KL(p || p~_teacher) > 0 at `where` ("train" or "fresh"): paired
                 per point and chain; SE = the spread across chains combined with the per-point
                 SE of each chain's mean (the fresh points are shared, so an out-of-sample
                 teacher's chains differ only through them); `than_kwargs`: the teacher_kwargs
                 of `than` (the teacher's own do not carry over)                             Sign
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .. import rng as rng_mod
from ..stats import mean_se
from ..verdicts import Outcome, Sign
from . import recipes
from .base import register_claim

__all__ = ["TEACHERS", "chain_kl", "chain_quality", "fit_seconds", "teacher_config", "training_points"]

#: figure label -> (registered kind, teacher_kwargs)
TEACHERS = {"deterministic": ("deterministic", {}), "ensemble": ("ensemble", {}), "mc_dropout": ("mc_dropout", {}),
            "laplace": ("laplace", {}), "laplace:kron": ("laplace", {"structure": "kron"}),
            "laplace:diag": ("laplace", {"structure": "diag"}), "vi": ("vi", {}), "brier": ("brier", {}),
            "temperature_scaled": ("temperature_scaled", {})}


def teacher_config(cfg: Mapping[str, Any], label: str) -> dict[str, Any]:
    """`cfg` with the trained teacher of figure label `label` (`TEACHERS`)."""
    if label not in TEACHERS:
        raise ValueError(f"teacher label must be one of {sorted(TEACHERS)}, got {label!r}")
    kind, kw = TEACHERS[label]
    out = {k: v for k, v in cfg.items() if k != "teacher_kwargs"}
    return {**out, "teacher": f"trained:{kind}", **({"teacher_kwargs": dict(kw)} if kw else {})}


def fit_seconds(cfgs: Any) -> float:
    """The total fitting time (seconds) of the trained teachers of configurations `cfgs` (read from
    the memoised teachers, so nothing is refitted if they were used)."""
    return float(sum(recipes.trained_teacher(c, recipes.trained_kind(c["teacher"])).train_time for c in cfgs))


def training_points(cfg: Mapping[str, Any]) -> list[np.ndarray]:
    """Chain r's n training inputs `[n, d]` (the loop's layout, `rng.chain_streams(seed, r).data`)."""
    import synthetic

    task = synthetic.make_task(cfg["task"], standardize=bool(cfg["standardize"]))
    first = int(cfg.get("first_chain", 0))
    return [task.sample(int(cfg["n"]), rng_mod.chain_streams(int(cfg["seed"]), r).data)[0]
            for r in range(first, first + int(cfg["chains"]))]


def _keys(cfg: Mapping[str, Any]) -> dict[str, Any]:
    out = {**recipes.fit_config(cfg), "teacher": cfg["teacher"], "report_n": int(cfg["report_n"])}
    out.update({k: cfg[k] for k in ("n", "seed", "chains", "first_chain") if k in cfg})
    return out


def chain_quality(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per chain {"train": TeacherReport at its training points, "fresh": at the shared fresh points}."""
    return _chain_quality(_keys(cfg))


@recipes.memo
def _chain_quality(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    import synthetic

    from ..teachers import quality
    from .transfer import chain_components

    task = synthetic.make_task(cfg["task"], standardize=bool(cfg["standardize"]))
    teacher = recipes.trained_teacher(cfg, recipes.trained_kind(cfg["teacher"]))
    xf, _, lpf = quality._eval_sample(task, int(cfg["report_n"]), int(cfg["teacher_seed"]))
    chains = chain_components(teacher)
    out = []
    for r, x in enumerate(training_points(cfg)):
        comps = [t for t, _ in chains[r if len(chains) > 1 else 0]]
        out.append({"train": quality.quality_at(teacher, x, task.log_bcp(x), name=teacher.spec),
                    "fresh": quality.quality_at(comps, xf, lpf, name=teacher.spec)})
    return out


def chain_kl(cfg: Mapping[str, Any], where: str) -> list[np.ndarray]:
    """Per chain, KL(p || p~) at each point `[N]` (nats) at `where`: "train" (the chain's training
    points, its targets there) or "fresh" (the shared fresh points, fold teachers averaged)."""
    return _chain_kl({**_keys(cfg), "where": where})


@recipes.memo
def _chain_kl(cfg: Mapping[str, Any]) -> list[np.ndarray]:
    import synthetic

    from ..teachers import quality
    from .transfer import chain_components

    if cfg["where"] not in ("train", "fresh"):
        raise ValueError(f"where must be 'train' or 'fresh', got {cfg['where']!r}")
    task = synthetic.make_task(cfg["task"], standardize=bool(cfg["standardize"]))
    teacher = recipes.trained_teacher(cfg, recipes.trained_kind(cfg["teacher"]))
    if cfg["where"] == "train":
        return [quality.pointwise_metrics(teacher, x, task.log_bcp(x))["kl"] for x in training_points(cfg)]
    xf, _, lpf = quality._eval_sample(task, int(cfg["report_n"]), int(cfg["teacher_seed"]))
    chains = chain_components(teacher)
    per = [np.mean([quality.pointwise_metrics(t, xf, lpf)["kl"] for t, _ in chain], axis=0) for chain in chains]
    return per if len(per) > 1 else per * int(cfg["chains"])


def _teacher_kl(cfg: Mapping[str, Any]) -> Outcome:
    """KL(than) - KL(teacher), paired per point and chain (module docstring)."""
    where = str(cfg.get("where", "fresh"))
    than = {k: v for k, v in cfg.items() if k not in ("teacher_kwargs", "than_kwargs")}
    than.update(teacher=cfg["than"], **({"teacher_kwargs": cfg["than_kwargs"]} if cfg.get("than_kwargs") else {}))
    a, b = chain_kl(than, where), chain_kl(cfg, where)
    d = [x - y for x, y in zip(a, b)]
    means = np.array([v.mean() for v in d])
    m, se_chains, R = mean_se(means)
    se_points = math.sqrt(float(np.mean([mean_se(v)[1] ** 2 for v in d])) / R)
    return Outcome(m, math.hypot(se_chains if R > 1 else 0.0, se_points),
                   info={"where": where, "chains": R, "se_chains": se_chains, "se_points": se_points,
                         "kl_than": float(np.mean([v.mean() for v in a])), "kl": float(np.mean([v.mean() for v in b]))})


_QUICK = {"task": "paper", "standardize": True, "regime": "finite", "n": 500, "seed": 9, "chains": 2, "teacher_n": 500,
          "teacher_epochs": 60, "members": 3, "passes": 16, "p_drop": 0.1, "teacher_seed": 9, "report_n": 2000,
          "teacher_widths": (32, 32), "fit_mode": "in-sample"}
register_claim(
    "teacher-kl", tags=("DESIGN 2.2", "2.10"), rule=Sign("+"), predict=lambda cfg: Outcome(0.0, 0.0),
    measure=_teacher_kl,
    statement="KL(p || p~) of {than} - that of {teacher} > 0 at the {where} points: the {teacher} teacher is "
              "closer to the true p (paired per point and chain)",
    defaults={"teacher-kl": {**_QUICK, "teacher": "trained:vi", "than": "trained:deterministic", "where": "train"}})
