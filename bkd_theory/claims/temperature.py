"""Claim kinds of the KD temperature (DESIGN 2.10, E22), and the numbers of its figure panels.

    E22a         bcp targets at a student temperature T (lam = 1): SGD from a perturbed start brings
                 F - F* to rounding (every per-sample gradient vanishes at theta*)          Zero
    E22a-labels  bcp targets at T with labels (lam < 1): stationary E[F - F*] = tr(H_1 S) / 2,
                 H_T S + S H_T = gamma (1 - lam)^2 C_onehot / b (E17 with the tempered H)   Equal
    E22b         a teacher-only temperature tau: SGD settles on the floor
                 E_x KL(p || softmax(log p / tau)) (`theory.distillation.temperature_floor`)   Equal
    E22c         sigma^2 of a noisy soft teacher at T at the tempered minimiser theta_T, by the
                 general route (`theory.temperature`), against Monte Carlo per-sample gradients
                 of the students' own KD path                                                Equal
    E22c-neighborhood  its stationary SGD neighborhood above the bias, E[F] - F(theta_T) =
                 grad F . E[theta - theta_T] + tr(H_1 S) / 2 (Lyapunov with H_T, C; first order)  Equal
                 (no `bkd check` default: `NEIGHBORHOOD`, ~15 s; shown by the figure)

Defaults: `triangle`, linear pinned-gauge student, float64. Everything reads the same run
(`recipes.run`, so `kd_temperature` and `lam` pass through as RunConfig fields) and the same theory
(`theory.temperature`, memoised here). `panels(quick)` gives the measured and predicted numbers of
the three panels "(a) BCP at T = 3, (b) tau floor, (c) sigma^2(T) vs MC" for a figure.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from .. import rng as rng_mod
from ..stats import mean_se
from ..verdicts import Equal, Outcome, Zero
from . import recipes
from .base import make, register_claim
from .library import RUN, TRIANGLE

__all__ = ["NEIGHBORHOOD", "panels", "tempered", "tempered_minimiser"]

#: the "claims" stream index of E22c's Monte Carlo inputs and targets
MC_STREAM = 22
TEMPER_KEYS = ("task", "student", "gauge", "features", "standardize", "teacher", "kd_temperature", "lam", "draws", "seed")


# ------------------------------------------------------------------ theory (memoised)
def tempered(cfg: Mapping[str, Any], quantity: str) -> Outcome:
    """One quantity of `theory.temperature.tempered_prediction` for the configuration (nats, or
    squared gradient norm for "sigma2"), memoised on the keys it reads."""
    keys = {k: cfg[k] for k in TEMPER_KEYS if k in cfg}
    if quantity in ("neighborhood", "excess", "curvature", "e17"):
        keys.update(gamma=float(cfg["gamma"]), batch=int(cfg.get("batch", 1)))
    return _tempered({**keys, "quantity": quantity})


@recipes.memo
def _tempered(cfg: Mapping[str, Any]) -> Outcome:
    from ..theory.integrate import integrator
    from ..theory.temperature import tempered_prediction

    task, student, teacher = recipes.objects(cfg)
    integ = integrator(task, student, teacher, seed=int(cfg["seed"]))
    e = tempered_prediction(task, student, teacher, float(cfg["kd_temperature"]), integ, cfg["quantity"],
                            lam=float(cfg.get("lam", 1.0)), gamma=float(cfg.get("gamma", 1.0)),
                            batch=int(cfg.get("batch", 1)), draws=int(cfg.get("draws", 256)), seed=int(cfg["seed"]))
    return Outcome(e.value, e.se, info={"method": e.method})


def tempered_minimiser(cfg: Mapping[str, Any]) -> np.ndarray:
    """theta_T `[P]`, the minimiser of the tempered objective (all inner draws; `theory.temperature`)."""
    return _minimiser({k: cfg[k] for k in TEMPER_KEYS if k in cfg})


@recipes.memo
def _minimiser(cfg: Mapping[str, Any]) -> np.ndarray:
    from ..theory.integrate import integrator
    from ..theory.temperature import tempered_noise

    task, student, teacher = recipes.objects(cfg)
    nodes = integrator(task, student, teacher, seed=int(cfg["seed"])).nodes
    return tempered_noise(task, student, teacher, float(cfg["kd_temperature"]), nodes, lam=float(cfg.get("lam", 1.0)),
                          draws=int(cfg.get("draws", 256)), seed=int(cfg["seed"]))[0].theta


# ------------------------------------------------------------------ measurements
def _zero(cfg: Mapping[str, Any]) -> Outcome:
    return Outcome(0.0, 0.0, info={"method": "exact (E22 a: interpolation at every T)"})


def final_excess_risk(cfg: Mapping[str, Any]) -> Outcome:
    """max over chains of F(theta_end) - F* (exact E_x on quadrature points where the task has them,
    `recipes.expected_kl`), with `recipes.converges`'s diagnostics in info."""
    r = recipes.run(cfg)
    kl, se, how = recipes.expected_kl(cfg, torch.from_numpy(r.theta_final))
    conv = recipes.converges(cfg)
    info = {"mean_final": float(kl.mean()), "eval": how, "eval_se": se, **conv.info,
            "log10_final_over_initial": conv.value}
    return Outcome(float(np.max(kl)), 0.0, info=info)


def _stationary(cfg: Mapping[str, Any]) -> Outcome:
    return recipes.stationary(cfg, "excess_risk")


def _floor(cfg: Mapping[str, Any]) -> Outcome:
    """E22 (b): `theory.distillation.temperature_floor` of the teacher's tau on the task's exact nodes."""
    from ..theory.distillation import temperature_floor
    from ..theory.integrate import integrator

    task, student, teacher = recipes.objects(cfg)
    tau = getattr(teacher, "tau", None)
    if tau is None:
        raise ValueError(f"teacher: E22b needs a temperature:TAU teacher, got {cfg['teacher']!r}")
    e = temperature_floor(task, float(tau), integrator(task, student, teacher, seed=int(cfg["seed"])).nodes)
    return Outcome(e.value, e.se, info={"method": e.method, "tau": float(tau)})


def sigma2_monte_carlo(cfg: Mapping[str, Any]) -> Outcome:
    """E||grad l(theta_T; x, t)||^2 over `n` fresh (x, y, t): targets by the feed's KD draw
    (`engine.kd.KDDraw`), gradients by the student's own `per_sample_grads` (the SGD path), at
    theta_T; SE across the samples (heavy tails: n >= 1e4)."""
    from ..engine.kd import KDDraw
    from ..students import KDTargets
    from ..teachers import with_lam

    task, student, teacher = recipes.objects(cfg)
    rng = rng_mod.stream(int(cfg["seed"]), "claims", MC_STREAM)
    x, y = task.sample(int(cfg["n"]), rng)
    draw = KDDraw(with_lam(teacher, float(cfg.get("lam", 1.0))), float(cfg["kd_temperature"]))
    hard, soft = draw.draw(task.bcp(x), y, rng, x)
    theta = torch.from_numpy(tempered_minimiser(cfg))[None].to(student.dtype)
    t = KDTargets(torch.from_numpy(hard)[None], torch.from_numpy(soft)[None], draw.T)
    g = student.per_sample_grads(theta, torch.from_numpy(x)[None], t)[0]
    v = (g**2).sum(-1).numpy()
    m, se, n = mean_se(v)
    return Outcome(m, se, info={"n": n, "mean_gradient_norm": float(g.mean(0).norm()), "method": "Monte Carlo, KD path"})


def excess_over_minimiser(cfg: Mapping[str, Any]) -> Outcome:
    """Stationary E[F(theta)] - F(theta_T) (nats), paired on the run's evaluation sample: per point,
    the window- and chain-averaged KL (`Run.points`) less the KL at theta_T; SE across chains
    (`recipes.stationary`) combined with the SD over the points of that difference / sqrt(N)
    (DESIGN 2.9 (c), for the difference: the sample's error of F itself cancels)."""
    from ..instruments import EvalSet
    from ..losses import kl_divergence

    r = recipes.run(cfg)
    total = recipes.stationary(cfg, "excess_risk")
    task, student, _ = recipes.objects(cfg)
    ev = EvalSet.from_task(task, int(r.config["eval_n"]), rng_mod.run_streams(int(r.config["seed"])).data, student.dtype)
    theta = torch.from_numpy(tempered_minimiser(cfg))[None].to(student.dtype)
    at_min = kl_divergence(ev.log_p, student.log_probs(theta, ev.x[None])[0]).numpy()
    steps, pts = r.points["excess_risk"]
    lo, hi = total.info["window"]
    diff = pts[(steps >= lo) & (steps <= hi)].mean(axis=0) - at_min
    value, se_e, n = mean_se(diff)
    info = {**total.info, "se_eval": se_e, "bias_on_eval": float(at_min.mean()), "paired_points": n}
    return Outcome(value, math.hypot(total.info["se_chains"], se_e), stationary=total.stationary, reason=total.reason,
                   info=info)


# ------------------------------------------------------------------ the kinds
_A = {**RUN, "teacher": "bcp", "lam": 1.0, "kd_temperature": 3.0, "gamma": 0.5, "init_scale": 0.5, "steps": 2000,
      "eval_every": 100, "eval_n": 1000, "chains": 16}
register_claim(
    "E22a", tags=("E22 (a)", "Prop. 2"),
    statement="bcp targets at student temperature T={kd_temperature} (lam={lam}): SGD from theta* + {init_scale} N(0, I) "
    "brings F - F* to rounding (interpolation at every T)", rule=Zero(1e-12), predict=_zero, measure=final_excess_risk,
    defaults={"E22a": _A})
_LABELS = {**RUN, "teacher": "bcp", "lam": 0.5, "kd_temperature": 3.0, "gamma": 0.05, "init": "optimum", "steps": "auto",
           "burn": 3.0, "eval_n": 4000, "chains": 48}
register_claim(
    "E22a-labels", tags=("E22 (a)", "E17"),
    statement="bcp targets at T={kd_temperature} with labels (lam={lam}), gamma={gamma}: stationary E[F - F*] = "
    "tr(H_1 S)/2 with H_T S + S H_T = gamma C / b (the tempered H)", rule=Equal(),
    predict=lambda cfg: tempered(cfg, "neighborhood"), measure=_stationary, defaults={"E22a-labels": _LABELS})
_B = {**RUN, "teacher": "temperature:2", "lam": 1.0, "gamma": 0.5, "init_scale": 0.5, "steps": 3000, "eval_every": 100,
      "eval_n": 2000, "chains": 16}
register_claim(
    "E22b", tags=("E22 (b)",),
    statement="teacher {teacher} (student at T = 1): SGD settles on the floor E_x KL(p || softmax(log p / tau))",
    rule=Equal(), predict=_floor, measure=_stationary, defaults={"E22b": _B})
_C = {**TRIANGLE, "teacher": "dirichlet:5", "lam": 1.0, "kd_temperature": 3.0, "draws": 256, "n": 65536}
register_claim(
    "E22c", tags=("E22 (c)", "E4"),
    statement="{teacher} soft targets at T={kd_temperature} (lam={lam}): sigma^2 at the tempered minimiser theta_T "
    "by the general route = Monte Carlo of the KD gradients", rule=Equal(),
    predict=lambda cfg: tempered(cfg, "sigma2"), measure=sigma2_monte_carlo, defaults={"E22c": _C})


#: E22c-neighborhood's configuration. Not a `bkd check` default: with a biased minimiser the linear
#: term grad F . (theta - theta_T) makes F fluctuate ~1.6x its mean, so 96 chains over ~1e4 steps
#: (~25 s) give a 10 % SE; the figure and a `slow` test check it. First order holds at gamma = 0.025
#: (measured / predicted 0.94 +- 0.10); at gamma = 0.05 and 0.1 the measurement is ~1.2x the prediction
NEIGHBORHOOD = {**RUN, "teacher": "dirichlet:2", "lam": 1.0, "kd_temperature": 2.0, "gamma": 0.025, "draws": 256,
                "init": "optimum", "steps": "auto", "burn": 4.0, "eval_n": 4000, "chains": 96, "seed": 1}
register_claim(
    "E22c-neighborhood", tags=("E22 (c)", "E17"),
    statement="{teacher} soft targets at T={kd_temperature}, gamma={gamma}: stationary E[F] - F(theta_T) = "
    "grad F . E[theta - theta_T] + tr(H_1 S)/2 (tempered H and C; the O(gamma) mean shift included)", rule=Equal(),
    predict=lambda cfg: tempered(cfg, "excess"), measure=excess_over_minimiser)


# ------------------------------------------------------------------ figure panels
def panels(quick: bool = True) -> dict[str, Any]:
    """The numbers of panels (a) BCP at T = 3, (b) tau floor, (c) sigma^2(T) vs MC, each from the
    claims registry: {"rows": tidy rows (panel, series, kind, x, value, se, claim), "records": the
    judged claims, "curve": (a)'s recorded steps and mean / max over chains of F - F*}.

    (a) E22a at T = 3 (and E22a-labels at lam = 1/2 when not quick); (b) E22b at tau = 2 (and 0.5, 3);
    (c) E22c at T = 1, 3 (and 2, 4; plus E22c-neighborhood when not quick). Quick: smaller Monte Carlo.
    """
    taus, temps = ((2.0,), (1.0, 3.0)) if quick else ((0.5, 2.0, 3.0), (1.0, 2.0, 3.0, 4.0))
    rows, records = [], []

    def add(panel: str, x: float, rec: Any) -> None:
        records.append(rec)
        for kind, o in (("measured", rec.measured), ("predicted", rec.predicted)):
            if o is not None:
                rows.append(dict(panel=panel, series=rec.claim.kind, kind=kind, x=x, value=o.value, se=o.se,
                                 claim=rec.claim.id))

    a = make("E22a", "E22a-T3")
    add("a", 3.0, a.check())
    if not quick:
        add("a", 0.5, make("E22a-labels", "E22a-labels-T3").check())
    for i, tau in enumerate(taus):
        # tau < 1 sharpens the target: theta*/tau sits where H is flatter, so convergence to the floor is
        # slower, and the drift test (against the ~0 across-chain SE of a noise-free run) needs it to rounding
        slow = {"gamma": 1.0, "steps": 20000} if tau < 1 else {}
        add("b", tau, make("E22b", f"E22b-tau{tau:g}", teacher=f"temperature:{tau:g}", seed=100 + i, **slow).check())
    for i, T in enumerate(temps):
        size = {"n": 2**14, "draws": 64} if quick else {}
        add("c", T, make("E22c", f"E22c-T{T:g}", kd_temperature=T, seed=200 + i, **size).check())
    if not quick:
        add("c-neighborhood", NEIGHBORHOOD["kd_temperature"], make("E22c-neighborhood", "E22c-neighborhood",
                                                                    **NEIGHBORHOOD).check())
    k, v = recipes.run(a.config).values("excess_risk")
    return {"rows": rows, "records": records,
            "curve": {"k": np.asarray(k), "mean": v.mean(1), "max": v.max(1)}}
