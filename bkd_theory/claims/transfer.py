"""Claim kinds of the student predicted from its teacher (DESIGN 2.10, E23 and E24; `theory.transfer`).

    E23   the minimiser of n frozen KD targets (1 - lam) e_y + lam t_T: E[F(theta_n)] - F* =
          [F(theta_lam) - F*] + [tr(H Sigma) / 2 + cross term] / n                            Equal
    E24   SGD with fresh targets (a Bayesian teacher sampled per visit with S draws): stationary
          E[F - F*] = [F(theta_lam) - F*] + (gamma / b) [tr C / 4 + cross term]               Equal
    E23-coupled  E23 beside the minimiser when the teacher was fitted on the student's own points
          (in-sample, cross-fitted): the fixed-function premise fails, the gap is measured   Finding
    E24-draws  the coefficient of 1/S of the stationary E[F - F*] over independent points S = 1..12
          (weighted least squares a + b / S) = the draws term of E24 times S                  Equal

The prediction reads the teacher function alone. A spec teacher goes through `theory.predict`
(rows e23_excess_risk, e24_excess_risk). A trained teacher ("trained:<kind>") is evaluated on
`transfer_mc` fresh inputs ("theory.inputs" stream), chain by chain: in-sample, chain r's own
teacher; cross-fitted, chain r's k fold teachers, each weighted by its share of the points (the
objective is linear in the targets); out-of-sample, one teacher for every chain. The prediction is
the mean over chains of the chains' E23, on the same fresh inputs, its SE the batch-means SE of
that mean (`theory.transfer.mean_estimate`: the inputs' error, shared by the chains, counts once).
In-sample the teacher was fitted on the very points the student trains on, which the fixed-function
premise of E23 does not cover: the gap to the measurement is the in-sample effect, reported (kind
E23-coupled), not hidden; cross-fitted, fold j's teacher was fitted on the other folds, which the
student also trains on, a weaker coupling of the same kind.

Measured: E23 by the replicas' empirical minimisers (`recipes.finite_n`: Newton, exact E_x where the
task has exact quadrature points, else the evaluation-sample term); E24 by the stationary run
(`recipes.stationary`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ..verdicts import Equal, Finding, Outcome
from . import recipes
from .base import register_claim
from .library import RUN, TRIANGLE

__all__ = ["TRANSFER_MC", "chain_components", "draws_points", "predicted"]

#: fresh inputs of a trained teacher's E23 / E24 prediction (per chain)
TRANSFER_MC = 2**14


def chain_components(teacher: Any) -> list[list[tuple[Any, float]]]:
    """Per chain, the (function teacher, share of the chain's points) pairs its targets come from:
    a `PointTeacher`'s groups (in-sample: one teacher per chain; cross-fitted: one per fold); any
    other teacher: [[(teacher, 1)]] (shared by all chains)."""
    from ..teachers.fitting import PointTeacher
    from ..teachers.pervisit import PerVisit

    if isinstance(teacher, PerVisit) and isinstance(teacher.base, PointTeacher):
        raise ValueError("E24 per-visit predictions need an out-of-sample teacher (fit_mode 'out-of-sample'); "
                         f"got {teacher.spec!r}")
    if not isinstance(teacher, PointTeacher):
        return [[(teacher, 1.0)]]
    out = []
    for rows, comps in teacher.groups:
        counts = np.bincount(teacher.owner[rows], minlength=len(teacher.components))
        out.append([(teacher.components[j], float(counts[j]) / len(rows)) for j in comps])
    return out


def predicted(cfg: Mapping[str, Any], quantity: str) -> Outcome:
    """E23 ("finite_n"), E24 ("neighborhood") or the coefficient of 1/S of E24's draws term
    ("draws_coefficient", a per-visit trained teacher only) of a configuration (nats)."""
    if recipes.trained_kind(cfg["teacher"]) is None:
        if quantity == "draws_coefficient":
            raise ValueError("the 1/S coefficient of E24 needs a trained teacher sampled per visit (teacher_draws)")
        return recipes.prediction(cfg, {"finite_n": "e23_excess_risk", "neighborhood": "e24_excess_risk"}[quantity])
    keys = {**recipes.training_config(cfg), "transfer_mc": int(cfg.get("transfer_mc", TRANSFER_MC)),
            "gamma": float(cfg.get("gamma", 1.0)), "batch": int(cfg.get("batch", 1)),
            "momentum": float(cfg.get("momentum", 0.0)), "quantity": quantity}
    return _trained(keys)


@recipes.memo
def _trained(cfg: Mapping[str, Any]) -> Outcome:
    from ..theory import integrate, transfer
    from ..theory.predictions import theta_star

    kind = recipes.trained_kind(cfg["teacher"])
    task, student = recipes.task_student(cfg)
    teacher, lam = recipes.trained_teacher(cfg, kind), float(cfg["lam"])
    integ = integrate.monte_carlo(task, int(cfg["transfer_mc"]), int(cfg["seed"]))
    th = theta_star(task, student).numpy()
    g, b = float(cfg["gamma"]) / (1.0 - float(cfg["momentum"])), int(cfg["batch"])
    S = int(cfg.get("teacher_draws") or 1)
    fn = {"finite_n": lambda t: t.finite_n(int(cfg["n"])), "neighborhood": lambda t: t.neighborhood(g, b),
          "draws_coefficient": lambda t: S * t.draws_term(g, b)}[cfg["quantity"]]
    ests = []
    for chain in chain_components(teacher):
        comps = [transfer.component(t, lam, integ.nodes, share) for t, share in chain]
        ests.append(transfer.transfer_estimate(student, th, integ,
                                               lambda nodes, idx: [transfer.subset(c, idx) for c in comps],
                                               sgd=cfg["quantity"] != "finite_n"))
        if cfg["quantity"] == "draws_coefficient" and ests[-1].full.trace_C_draws == 0.0:
            raise ValueError(f"teacher {teacher.spec!r} has no per-visit draws: set teacher_draws")
    e = transfer.mean_estimate(ests, fn, "E23" if cfg["quantity"] == "finite_n" else "E24")
    parts = [{k: getattr(t.full, k) for k in ("bias", "variance_n", "cross_n", "trace_C", "trace_C_draws")}
             for t in ests]
    info = {"method": e.method, "chains_predicted": len(ests), "per_chain": parts,
            "bias": float(np.mean([p["bias"] for p in parts]))}
    return Outcome(e.value, e.se, info=info)


def draws_points(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One configuration per number of draws S in `samples`, each with its own seed from `seeds`."""
    if len(cfg["samples"]) != len(cfg["seeds"]) or len(cfg["samples"]) < 2:
        raise ValueError(f"samples and seeds must be two lists of equal length >= 2, got {cfg['samples']!r} and "
                         f"{cfg['seeds']!r}")
    drop = ("samples", "seeds")
    return [{**{k: v for k, v in cfg.items() if k not in drop}, "teacher_draws": int(S), "seed": int(seed)}
            for S, seed in zip(cfg["samples"], cfg["seeds"])]


def _draws_measure(cfg: Mapping[str, Any]) -> Outcome:
    """The coefficient b of 1/S in a + b / S fitted to the stationary E[F - F*] of the independent
    points by weighted least squares (weights 1 / SE^2), its SE from the fit's covariance."""
    outs = recipes.stationaries(draws_points(cfg), "excess_risk")
    S = np.array([float(s) for s in cfg["samples"]])
    y, se = np.array([o.value for o in outs]), np.array([o.se for o in outs])
    X = np.stack([np.ones_like(S), 1.0 / S], axis=1)
    W = 1.0 / se**2
    cov = np.linalg.inv(X.T @ (W[:, None] * X))
    coef = cov @ X.T @ (W * y)
    bad = "; ".join(o.reason for o in outs if o.stationary is False)
    return Outcome(float(coef[1]), float(math.sqrt(cov[1, 1])), stationary=False if bad else True, reason=bad,
                   info={"intercept": float(coef[0]), "intercept_se": float(math.sqrt(cov[0, 0])),
                         "samples": S.tolist(), "excess_risk": y.tolist(), "excess_risk_se": se.tolist()})


#: the biased fixed teacher of E23's default: labels mixed with the teacher-side temperature tau = 2
#: (softmax(log p / 2), realizable by theta* / 2), so the bias, the variance and the cross term are all
#: of the same order at n = 400
_E23 = {**TRIANGLE, "teacher": "mixture:0.5:temperature:2", "n": 400, "chains": 2500, "newton_steps": 12,
        "grad_tol": 1e-9}
register_claim(
    "E23", tags=("E23",), rule=Equal(), predict=lambda cfg: predicted(cfg, "finite_n"), measure=recipes.finite_n,
    statement="{teacher} frozen targets, n={n}: the minimiser's excess risk = F(theta_lam) - F* + "
              "[tr(H Sigma) / 2 + cross term] / n (E23)",
    defaults={"E23-mixture": _E23,
              "E23-floor": {**_E23, "teacher": "temperature:2", "n": 50, "chains": 64}})
register_claim(
    "E23-coupled", tags=("E23",), rule=Finding(), predict=lambda cfg: predicted(cfg, "finite_n"),
    measure=recipes.finite_n,
    statement="{teacher} fitted {fit_mode} on the student's n={n} points: the minimiser's excess risk beside E23 "
              "from the teacher function (E23 assumes a teacher independent of the training points)")
register_claim(
    "E24", tags=("E24", "E17"), rule=Equal(), predict=lambda cfg: predicted(cfg, "neighborhood"),
    measure=lambda cfg: recipes.stationary(cfg, "excess_risk"),
    statement="{teacher} fresh targets, SGD at gamma={gamma}: stationary E[F - F*] = F(theta_lam) - F* + "
              "(gamma / b) [tr C / 4 + cross term] (E24)",
    defaults={"E24-mixture": {**RUN, "teacher": "mixture:0.5:temperature:2", "init": "optimum", "gamma": 0.05,
                              "regime": "online", "steps": 20000, "eval_every": 100, "eval_n": 4000,
                              "chains": 64}})
register_claim(
    "E24-draws", tags=("E24",), rule=Equal(), predict=lambda cfg: predicted(draws_points(cfg)[0], "draws_coefficient"),
    measure=_draws_measure,
    statement="{teacher} sampled per visit with S in {samples} draws, SGD at gamma={gamma}: the stationary "
              "E[F - F*] is a + b / S with b = the E24 draws term at S = 1")
