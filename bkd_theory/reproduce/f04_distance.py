"""F4, T1 and T3: E||theta_k - theta*||^2 vs k with the bounds E13/E15 and the Lyapunov value E17'.

Configuration: the triangle task, the linear softmax student in the pinned gauge, float64, online
regime (a fresh (x, t) every step), batch 1, perturbed initialisation theta* + 0.3 N(0, I), R
independent chains (`sgd.run` with the `Distance` instrument).

Constants (`theory.constants`, DESIGN 2.6):
- calL of E12 on n = `CALL_INPUTS` = 1e6 task inputs (Gaussian inputs are unbounded, so calL grows
  slowly with n: a full run visits R x steps ~ 5e6 inputs, where E12 gives ~5 % more); T1 runs at
  gamma = 1/calL, T3 at gamma = 1/(2 calL), the largest admissible step sizes.
- mu (strong quasi-convexity) and L: the extreme Hessian eigenvalues over theta* and sampled points
  of the ball around theta* whose radius is the largest distance any chain of the run visits
  (`local_constants`); kappa = L / mu is reported with every bound.
- sigma_T^2: `sigma2_closed_form` (E6, E8). tr S (E17'): `stationary.lyapunov_covariance` with H
  and C at theta*; the next-order correction (`corrected_covariance`) is reported beside it.

Measured: the mean over chains of dist2 at each recorded k with the SE across chains; stationary
values are each chain's time average over the last half, SE across chains, with the run summary's
stationarity check (DESIGN 2.9). Verdicts: a bound "holds" at k when measured - 4 SE <= bound;
"agrees" when |measured - predicted| <= 4 SE.

Panels: (a) T1 with bcp targets; (b) T3 with onehot and Dirichlet targets, with tr S; (c) the
looseness measured / bound vs k. CSV columns: panel, series, kind, x, value, se (x = k).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import synthetic

from .. import plots, sgd
from .. import teachers as T
from ..instruments import Distance, Every
from ..plots import theorems as tp
from ..students import Linear
from ..theory import bounds, stationary
from ..theory import constants as const
from ..theory import predictions as pred
from . import write_claims

FIG_ID = "F4"
SEED = 4
Z = 4.0  # verdict tolerance in standard errors (contract)
INIT_SCALE = 0.3
CALL_INPUTS = 1_000_000  # calL of E12 is quoted for this many task inputs (the same gamma in quick and full mode)
STEP_RULE = {"T1": "1/calL", "T3": "1/(2 calL)"}
RUNS = (("T1", "bcp"), ("T3", "onehot"), ("T3", "dirichlet:1"))


def chain_curve(run: sgd.Run, quantity: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (steps `[T]`, mean over chains `[T]`, SE across chains `[T]`) of a recorded quantity."""
    steps, vals = run.values(quantity)
    ok = np.all(np.isfinite(vals), axis=0)
    vals = vals[:, ok]
    return steps, vals.mean(axis=1), vals.std(axis=1, ddof=1) / math.sqrt(vals.shape[1])


def bound_check(mean: np.ndarray, se: np.ndarray, bound: np.ndarray) -> tuple[bool, int]:
    """Return (bound holds at every k within 4 SE, index of the closest approach: max measured/bound
    over k >= 1; at k = 0 the bound equals the measured mean by construction)."""
    holds = bool(np.all(mean - Z * se <= bound))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bound > 0, mean / bound, np.inf)
    return holds, 1 + int(np.nanargmax(ratio[1:]))


def make(quick: bool, out: Path) -> list[Path]:
    """Write F4.png, F4.csv and F4.claims.csv into `out`; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps, chains = (1000, 32) if quick else (20_000, 256)
    n_mc = 20_000 if quick else 100_000
    task = synthetic.make_task("triangle")
    student = Linear(task, gauge="pinned", dtype=torch.float64)
    smooth = const.training_smoothness(task, student, CALL_INPUTS, seed=SEED)
    # H, C_T and the per-sample Hessian factors U on the same n_mc inputs (same seed and key)
    H = const.hessian_at_optimum(task, student, n_mc=n_mc, seed=SEED)
    U = pred.hessian_factors(task, student, n_mc=n_mc, seed=SEED)

    rows: list[dict] = []
    claims: list[dict] = []
    curves: dict[str, dict] = {}
    for theorem, spec in RUNS:
        teacher = T.parse_teacher(spec)
        gamma = bounds.gamma_max(theorem, calL=smooth.calL)
        run = sgd.run(sgd.RunConfig(task="triangle", student="linear", gauge="pinned", teacher=spec, gamma=gamma, steps=steps,
                                    chains=chains, init="perturbed", init_scale=INIT_SCALE, seed=SEED, eval_n=16, dtype="float64"),
                      instruments=[Distance(Every(max(1, steps // 200), last=steps))])
        k, mean, se = chain_curve(run, "dist2")
        radius = float(np.sqrt(np.nanmax(run.values("dist2")[1])))
        local = const.local_constants(task, student, radius=radius, n_points=16, n_mc=n_mc // 5, seed=SEED)
        dist0 = float(mean[0])
        sigma2 = pred.sigma2_closed_form(task, student, teacher, n_mc=n_mc, seed=SEED)
        if theorem == "T1":
            bd = bounds.bound_t1(gamma, mu=local.mu, calL=smooth.calL, dist0=dist0, k=k)
        else:
            bd = bounds.bound_t3(gamma, mu=local.mu, calL=smooth.calL, sigma2=sigma2.value, dist0=dist0, k=k)
        label = f"{spec} ({theorem}, gamma = {gamma:.3g})"
        rows += [dict(panel="a" if theorem == "T1" else "b", series=spec, kind="measured", x=int(s), value=m, se=e)
                 for s, m, e in zip(k, mean, se)]
        rows += [dict(panel="a" if theorem == "T1" else "b", series=spec, kind=f"bound {'E13' if theorem == 'T1' else 'E15'}",
                      x=int(s), value=b, se=0.0) for s, b in zip(k, bd.values)]
        rows += [dict(panel="c", series=spec, kind="measured / bound", x=int(s), value=m / b, se=e / b)
                 for s, m, e, b in zip(k, mean, se, bd.values)]
        conf = (f"triangle, linear pinned, float64, online, b=1, R={chains}, {steps} steps, gamma={gamma:.4g} "
                f"(= {STEP_RULE[theorem]}), calL={smooth.calL:.4g} (E12, n={smooth.n:,}), mu={local.mu:.4g}, "
                f"L={local.L:.4g}, kappa={local.kappa:.3g} on the ball of radius {radius:.3g} around theta*")
        holds, i = bound_check(mean, se, bd.values)
        tag = "E13" if theorem == "T1" else "E15"
        claims.append(dict(claim=f"{theorem} ({tag}) bound on E||theta_k - theta*||^2 holds at every recorded k, {spec} "
                                 f"(closest approach k={int(k[i])})", configuration=conf, predicted=bd.values[i],
                           measured=mean[i], measured_se=se[i], ratio=mean[i] / bd.values[i], verdict="holds" if holds else "fails"))
        curve = dict(label=label, k=k, mean=mean, se=se, bound=bd.values, theorem=theorem)
        if theorem == "T1":
            claims.append(dict(claim=f"T1 (E13) looseness at the last k={int(k[-1])}, {spec}", configuration=conf,
                               predicted=bd.values[-1], measured=mean[-1], measured_se=se[-1], ratio=mean[-1] / bd.values[-1],
                               verdict="holds" if mean[-1] - Z * se[-1] <= bd.values[-1] else "fails"))
        else:
            summ = run.summary()["quantities"]["dist2"]
            st_flag = f"stationary={summ['stationary']}, window k in {summ['window']}"
            claims.append(dict(claim=f"T3 (E15) neighborhood 2 gamma sigma^2 / mu vs stationary E||theta - theta*||^2, {spec}",
                               configuration=f"{conf}; {st_flag}", predicted=bd.neighborhood, measured=summ["value"],
                               measured_se=summ["se"], ratio=summ["value"] / bd.neighborhood,
                               verdict="holds" if summ["value"] - Z * summ["se"] <= bd.neighborhood else "fails"))
            C = pred.gradient_noise(task, student, teacher, n_mc=n_mc, seed=SEED).C
            trS = float(np.trace(stationary.lyapunov_covariance(H, C, gamma)))
            corr = stationary.corrected_covariance(H, C, U, gamma)
            for what, value in (("E17' tr S (Lyapunov)", trS), ("E17' next-order correction", corr.dist2)):
                claims.append(dict(claim=f"{what}: stationary E||theta - theta*||^2, {spec}",
                                   configuration=f"{conf}; {st_flag}; gamma_ms={corr.gamma_ms:.3g}", predicted=value,
                                   measured=summ["value"], measured_se=summ["se"], ratio=summ["value"] / value,
                                   verdict="agrees" if abs(summ["value"] - value) <= Z * summ["se"] else "disagrees"))
            rows += [dict(panel="b", series=spec, kind="E17' tr S", x=math.nan, value=trS, se=0.0),
                     dict(panel="b", series=spec, kind="stationary measured", x=math.nan, value=summ["value"], se=summ["se"])]
            curve.update(trS=trS)
        curves[spec] = curve
    frame = pd.DataFrame(rows, columns=["panel", "series", "kind", "x", "value", "se"])
    csv = out / f"{FIG_ID}.csv"
    frame.to_csv(csv, index=False)

    fig, axes = plots.new_figure(3)
    colors = {"bcp": "C1", "onehot": "C0", "dirichlet:1": "C2"}
    for spec, c in curves.items():
        ax = axes[0, 0] if c["theorem"] == "T1" else axes[0, 1]
        tp.curve_with_band(ax, c["k"], c["mean"], c["se"], label=f"{c['label']} measured", color=colors[spec], log=True)
        tp.prediction_line(ax, c["k"], c["bound"], label=f"{'E13' if c['theorem'] == 'T1' else 'E15'} bound, {spec}", color=colors[spec])
        if "trS" in c:
            tp.level(ax, c["trS"], label=f"E17' tr S, {spec}", color=colors[spec])
        ratio = c["mean"] / c["bound"]
        tp.curve_with_band(axes[0, 2], c["k"], ratio, c["se"] / c["bound"], label=spec, color=colors[spec], log=True)
    axes[0, 0].set_title("(a) T1: bcp targets, gamma = 1/calL")
    axes[0, 1].set_title("(b) T3: noisy targets, gamma = 1/(2 calL)")
    axes[0, 2].set_title("(c) looseness: measured / bound")
    tp.level(axes[0, 2], 1.0, label="bound", color="k", style="--")
    for ax in axes[0]:
        ax.set_xlabel("iteration k")
        ax.legend(fontsize=6.5)
    axes[0, 0].set_ylabel("E||theta_k - theta*||^2")
    axes[0, 1].set_ylabel("E||theta_k - theta*||^2")
    caption = (f"F4 ({'quick' if quick else 'full'}): triangle, linear softmax student (pinned gauge, float64), online SGD, b = 1, "
               f"R = {chains} chains, init theta* + {INIT_SCALE} N(0, I), seed {SEED}. calL = {smooth.calL:.3g} (E12 on "
               f"{smooth.n:,} inputs); mu, L local on the visited ball. Bands: +-2 SE across chains.")
    png = plots.save(fig, out, FIG_ID, caption)
    return [png, csv, write_claims(out, FIG_ID, claims)]
