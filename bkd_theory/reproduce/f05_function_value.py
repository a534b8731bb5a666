"""F5, T2 and T4: E[F(theta_k) - F*] vs k on the teacher-network task with an MLP student.

Configuration: `TeacherNetworkTask` (preset "teacher-net": d = 5, K = 3, one hidden layer of 16 tanh
units) and an MLP student of the same architecture, float64, so the student is realizable with
theta* = the generating weights (Prop. 2 applies). Online SGD, batch 1, init theta* + 0.15 N(0, I).

Two kinds of runs:
- practical: gamma = `GAMMA` for bcp, onehot and Dirichlet(1) targets. bcp must converge to F*
  (interpolation, no neighborhood); noisy targets plateau, compared with E17 = gamma sigma^2 / 4.
- admissible: bcp at gamma = mu/(L calL) (T2) and onehot at mu/(2 L calL) (T4), the largest step
  sizes the theorems allow, with the bounds E14/E16 (`theory.bounds`) on the same plot.

Local constants (`theory.constants`, DESIGN 2.6), region stated in every claim:
- mu: lambda_min of the Hessian at theta* on its range (`hessian_at_optimum` + `curvature`; the
  output layer's softmax gauge, bias and weights shifted equally across classes, gives 17 null
  directions). The PL constant of any neighbourhood of theta* is at most this. The Hessian's
  lambda_min over the visited ball (`local_constants`) is reported too; it is <= 0 here, so no
  larger constant can be certified on that region. The ratio ||grad F||^2 / (2 (F - F*)) along the
  practical trajectories (`PLRatio`, an instrument defined here) is shown as the empirical PL value.
- L: the largest Hessian eigenvalue over the visited ball (`local_constants`).
- calL: `expected_smoothness_empirical` on the visited ball; a lower estimate of the supremum (E12
  is for linear students only), so gamma_max is if anything optimistic.

Measured: `ExcessRisk` (mean KL(p || q) on a fixed evaluation sample), mean over chains with the
SE across chains; stationary values are the last-half time averages with the run summary's
stationarity check (DESIGN 2.9). The evaluation sample's own sampling error (common to all chains,
relative size ~ 1/sqrt(eval_n)) is not in the SE. Verdicts: a bound "holds" at k when measured -
4 SE <= bound; "agrees" when |measured - predicted| <= 4 SE.

Panels: (a) bcp; (b) noisy targets with E17 and E16; (c) the PL ratio along the practical runs.
CSV columns: panel, series, kind, x, value, se (x = k).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

import synthetic

from .. import plots, sgd
from .. import teachers as T
from ..instruments import Distance, Every, ExcessRisk, Scheduled, StepContext, mask_inactive
from ..losses import kl_divergence
from ..plots import theorems as tp
from ..students import build_student
from ..theory import bounds, stationary
from ..theory import constants as const
from ..theory import predictions as pred
from . import write_claims
from .f04_distance import bound_check, chain_curve

FIG_ID = "F5"
SEED = 5
Z = 4.0  # verdict tolerance in standard errors (contract)
TASK = "teacher-net"
STUDENT = "mlp:16:tanh"
GAMMA = 0.02
INIT_SCALE = 0.15
PRACTICAL = ("bcp", "onehot", "dirichlet:1")


@dataclass(frozen=True)
class PLRatio(Scheduled):
    """`pl_ratio` = ||grad F(theta_k)||^2 / (2 (F(theta_k) - F*)) on the first `m` evaluation points.

    F is the risk of bcp targets on those points (its gradient is the mean of E1 gradients with
    t = p(x); for unbiased teachers it is the same F, DESIGN 2.3) and F - F* the mean KL(p || q) on
    the same points, so theta* minimises both exactly (interpolation) and the ratio is the PL
    quotient of that empirical risk. The minimum over visited points is an empirical (upper)
    estimate of the local PL constant mu.
    """

    m: int = 2000
    name: ClassVar[str] = "pl_ratio"
    needs: ClassVar[frozenset[str]] = frozenset({"theta", "eval_log_q"})

    def observe(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Return {"pl_ratio": `[R]`}."""
        R, m = ctx.theta.shape[0], min(self.m, len(ctx.eval_set.x))
        x = ctx.eval_set.x[:m].to(ctx.theta).expand(R, m, -1)
        p = ctx.eval_set.p[:m].to(ctx.theta).expand(R, m, -1)
        g = ctx.student.batch_grad(ctx.theta, x, p)
        log_q = ctx.eval_log_q[:, :m]
        gap = kl_divergence(ctx.eval_set.log_p[:m].to(log_q).expand_as(log_q), log_q).mean(dim=-1)
        return {"pl_ratio": mask_inactive((g * g).sum(dim=-1) / (2.0 * gap), ctx.active)}


def _run(spec: str, gamma: float, steps: int, chains: int, eval_n: int, every: int, pl: bool) -> sgd.Run:
    instruments = [ExcessRisk(Every(every, last=steps))]
    if pl:
        instruments += [PLRatio(Every(2 * every, last=steps)), Distance(Every(every, last=steps))]
    cfg = sgd.RunConfig(task=TASK, student=STUDENT, teacher=spec, gamma=gamma, steps=steps, chains=chains, init="perturbed",
                        init_scale=INIT_SCALE, seed=SEED, eval_n=eval_n, dtype="float64")
    return sgd.run(cfg, instruments=instruments)


def make(quick: bool, out: Path) -> list[Path]:
    """Write F5.png, F5.csv and F5.claims.csv into `out`; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if quick:
        steps, chains, eval_n, every, adm_steps, adm_chains = 400, 16, 2000, 50, 200, 8
        n_mc, n_pts, n_sig = 512, 2, 1024
    else:
        steps, chains, eval_n, every, adm_steps, adm_chains = 8000, 64, 8000, 200, 2000, 16
        n_mc, n_pts, n_sig = 2048, 4, 8192
    task = synthetic.make_task(TASK)
    student = build_student(STUDENT, task, dtype=torch.float64)

    rows: list[dict] = []
    claims: list[dict] = []
    runs = {spec: _run(spec, GAMMA, steps, chains, eval_n, every, pl=True) for spec in PRACTICAL}
    radius = max(float(np.sqrt(np.nanmax(r.values("dist2")[1]))) for r in runs.values())  # the visited ball
    curv = const.curvature(const.hessian_at_optimum(task, student, n_mc=n_sig, seed=SEED, method="fisher"))
    local = const.local_constants(task, student, radius=radius, n_points=n_pts, n_mc=n_mc, seed=SEED)
    star_norm = float(student.optimum(task).norm())
    emp = const.expected_smoothness_empirical(task, student, radii=tuple(f * radius / star_norm for f in (0.25, 0.5, 1.0)),
                                              n_directions=4, n_mc=n_mc, seed=SEED)
    mu, L, calL = curv.mu, local.L, emp.calL.value
    kappa = L / mu
    sig = {spec: pred.sigma2_closed_form(task, student, T.parse_teacher(spec), n_mc=n_sig, seed=SEED, route="jacobian")
           for spec in PRACTICAL}
    region = (f"mu = lambda_min(H*) on its range = {mu:.3g} ({curv.null_dim} gauge directions removed); lambda_min over the "
              f"visited ball r = {radius:.3g}: {local.mu:.3g}; L = {L:.3g} on that ball; calL >= {calL:.3g} (empirical); "
              f"kappa = {kappa:.3g}")
    conf = f"{TASK} (d=5, K=3, 16 tanh), student {STUDENT}, float64, online, b=1, init theta* + {INIT_SCALE} N(0, I)"

    curves: dict[str, dict] = {}
    pl_min = math.inf
    for spec, run in runs.items():
        k, mean, se = chain_curve(run, "excess_risk")
        rows += [dict(panel="a" if spec == "bcp" else "b", series=f"{spec}, gamma={GAMMA:g}", kind="measured", x=int(s), value=m, se=e)
                 for s, m, e in zip(k, mean, se)]
        kp, pm, pse = chain_curve(run, "pl_ratio")
        rows += [dict(panel="c", series=spec, kind="measured", x=int(s), value=m, se=e) for s, m, e in zip(kp, pm, pse)]
        pl_min = min(pl_min, float(np.nanmin(run.values("pl_ratio")[1])))
        curves[spec] = dict(k=k, mean=mean, se=se, kp=kp, pm=pm, pse=pse)
        summ = run.summary()["quantities"]["excess_risk"]
        st_flag = f"stationary={summ['stationary']}, window k in {summ['window']}"
        if spec == "bcp":
            e17_onehot = stationary.neighborhood_excess_risk(sig["onehot"].value, GAMMA)
            # no plateau: still decreasing significantly over the last half, or already far below the noisy level
            falling = summ["drift"] + Z * summ["drift_se"] < 0
            ok = falling or mean[-1] + Z * se[-1] < 0.1 * e17_onehot
            claims.append(dict(claim="Interpolation: bcp targets converge to F* (no neighborhood)",
                               configuration=f"{conf}; gamma={GAMMA:g}, R={chains}, k={int(k[-1])}; last-half drift "
                                             f"{summ['drift']:.2g} +- {summ['drift_se']:.2g}; criterion: drift < -4 SE (no plateau) or "
                                             f"below 1/10 of the onehot E17 level {e17_onehot:.3g}",
                               predicted=0.0, measured=mean[-1], measured_se=se[-1], ratio=math.nan, verdict="holds" if ok else "fails"))
        else:
            e17 = stationary.neighborhood_excess_risk(sig[spec].value, GAMMA)
            e17_se = GAMMA * sig[spec].se / 4
            curves[spec]["e17"] = (e17, e17_se)
            rows.append(dict(panel="b", series=f"{spec}, gamma={GAMMA:g}", kind="E17 gamma sigma^2/4", x=math.nan, value=e17, se=e17_se))
            rows.append(dict(panel="b", series=f"{spec}, gamma={GAMMA:g}", kind="stationary measured", x=math.nan, value=summ["value"], se=summ["se"]))
            claims.append(dict(claim=f"E17: stationary E[F - F*] = gamma sigma^2 / 4, {spec}",
                               configuration=f"{conf}; gamma={GAMMA:g}, R={chains}, {steps} steps; {st_flag}; sigma^2 = {sig[spec].value:.4g} (E6/E8)",
                               predicted=e17, measured=summ["value"], measured_se=summ["se"], ratio=summ["value"] / e17,
                               verdict="agrees" if abs(summ["value"] - e17) <= Z * math.hypot(summ["se"], e17_se) else "disagrees"))
    claims.append(dict(claim="Local PL constant: lambda_min(H*) on the range vs min PL ratio over the visited points",
                       configuration=f"{conf}; {region}", predicted=mu, measured=pl_min, measured_se=math.nan,
                       ratio=pl_min / mu, verdict="finding"))

    for theorem, spec in (("T2", "bcp"), ("T4", "onehot")):
        gamma = bounds.gamma_max(theorem, calL=calL, mu=mu, L=L)
        run = _run(spec, gamma, adm_steps, adm_chains, eval_n, max(1, adm_steps // 20), pl=False)
        k, mean, se = chain_curve(run, "excess_risk")
        if theorem == "T2":
            bd = bounds.bound_t2(gamma, mu=mu, L=L, calL=calL, gap0=float(mean[0]), k=k)
        else:
            bd = bounds.bound_t4(gamma, mu=mu, L=L, calL=calL, sigma2=sig[spec].value, gap0=float(mean[0]), k=k)
        tag = "E14" if theorem == "T2" else "E16"
        panel = "a" if spec == "bcp" else "b"
        rows += [dict(panel=panel, series=f"{spec}, gamma={gamma:.3g}", kind="measured", x=int(s), value=m, se=e)
                 for s, m, e in zip(k, mean, se)]
        rows += [dict(panel=panel, series=f"{spec}, gamma={gamma:.3g}", kind=f"bound {tag}", x=int(s), value=b, se=0.0)
                 for s, b in zip(k, bd.values)]
        holds, i = bound_check(mean, se, bd.values)
        contraction = (1 - gamma * mu) ** int(k[-1])
        claims.append(dict(claim=f"{theorem} ({tag}) bound on E[F - F*] holds at every recorded k, {spec} (closest approach k={int(k[i])})"
                                 f"; vacuous when (1 - gamma mu)^k ~ 1",
                           configuration=f"{conf}; gamma = {gamma:.3g} (largest admissible), R={adm_chains}, {adm_steps} steps; "
                                         f"(1 - gamma mu)^k = {contraction:.12g} at k={int(k[-1])}; {region}",
                           predicted=bd.values[i], measured=mean[i], measured_se=se[i], ratio=mean[i] / bd.values[i],
                           verdict="holds" if holds else "fails"))
        curves[f"{spec} {theorem}"] = dict(k=k, mean=mean, se=se, bound=bd.values, tag=tag, gamma=gamma)
    frame = pd.DataFrame(rows, columns=["panel", "series", "kind", "x", "value", "se"])
    csv = out / f"{FIG_ID}.csv"
    frame.to_csv(csv, index=False)

    fig, axes = plots.new_figure(3)
    colors = {"bcp": "C1", "onehot": "C0", "dirichlet:1": "C2"}
    for spec in PRACTICAL:
        c = curves[spec]
        ax = axes[0, 0] if spec == "bcp" else axes[0, 1]
        tp.curve_with_band(ax, c["k"], c["mean"], c["se"], label=f"{spec}, gamma = {GAMMA:g}", color=colors[spec], log=True)
        if "e17" in c:
            tp.level(ax, c["e17"][0], c["e17"][1], label=f"E17 gamma sigma^2/4, {spec}", color=colors[spec])
        tp.curve_with_band(axes[0, 2], c["kp"], c["pm"], c["pse"], label=spec, color=colors[spec], log=True)
    for key, ax in (("bcp T2", axes[0, 0]), ("onehot T4", axes[0, 1])):
        c = curves[key]
        tp.curve_with_band(ax, c["k"], c["mean"], c["se"], label=f"{key.split()[0]}, gamma = {c['gamma']:.2g} (admissible)",
                           color="0.35", log=True)
        tp.prediction_line(ax, c["k"], c["bound"], label=f"{c['tag']} bound ({key.split()[1]})", color="k")
    tp.level(axes[0, 2], mu, label="lambda_min(H*) on range", color="k", style="--")
    axes[0, 0].set_title("(a) bcp: interpolation and T2")
    axes[0, 1].set_title("(b) noisy targets: E17 and T4")
    axes[0, 2].set_title("(c) PL ratio ||grad F||^2 / 2(F - F*)")
    for ax in axes[0]:
        ax.set_xlabel("iteration k")
        ax.legend(fontsize=6)
    axes[0, 0].set_ylabel("E[F(theta_k) - F*] (nats)")
    axes[0, 1].set_ylabel("E[F(theta_k) - F*] (nats)")
    caption = (f"F5 ({'quick' if quick else 'full'}): teacher-net task (d=5, K=3, 16 tanh units), realizable MLP student "
               f"{STUDENT}, float64, online SGD, b = 1, R = {chains} chains ({adm_chains} at admissible gamma), seed {SEED}. "
               f"kappa = L/mu = {kappa:.2g}: T2/T4 admit only gamma <= {bounds.gamma_max('T2', calL=calL, mu=mu, L=L):.1g}. "
               f"Bands: +-2 SE across chains.")
    png = plots.save(fig, out, FIG_ID, caption)
    return [png, csv, write_claims(out, FIG_ID, claims)]
