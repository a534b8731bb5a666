"""F8, generalisation: excess risk and accuracy of the trained student vs n and vs teacher noise
(DESIGN 2.4, 2.8; E10, E18).

Configuration: triangle task, linear softmax student in the pinned gauge, float64, finite regime
with frozen targets (one draw per training point, reused every epoch). Every chain has its own
training set of n points and its own frozen targets (the engine draws both from the chain's
streams), so chains are independent samples and the SE across chains is valid.

Training: the empirical risk is minimised to convergence by full-batch heavy-ball gradient descent
through the engine (`sgd.run` with batch = n and epoch shuffling: every step is one exact epoch
gradient; constant gamma and momentum tuned to H's spectrum), from theta*. Convergence is checked: the excess risk
at the end and at three quarters of the steps agree to a relative 1e-3 (reported per configuration).

- Measurement: `instruments.ExcessRisk` (mean KL(p || q) on a fixed evaluation sample) and
  `instruments.Calibration` (accuracy against the evaluation labels) at the end; SE across chains,
  combined with the evaluation sample's sampling error (`f06_neighborhood.eval_sampling_se`).
  Accuracy loss = accuracy of theta* (the Bayes classifier, recorded at step 0) minus the trained
  student's, on the same evaluation points (paired).
- Predictions: E18 tr(H^-1 C_T) / (2n) (`theory.stationary.finite_n`, with H from
  `constants.hessian_at_optimum` and C_T from `predictions.gradient_noise`), nu_c (E10,
  `predictions.critical_noise`) and the E18 crossover nu at which frozen additive noise gives the
  same E18 excess risk as one-hot labels. bcp targets: theta* is the exact empirical minimiser
  (Prop. 2), excess risk 0.
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
from ..instruments import Calibration, Every, ExcessRisk
from ..plots import neighborhood as nb
from ..plots.theorems import level
from ..students import Linear
from ..theory import constants, predictions, stationary
from . import write_claims
from .f06_neighborhood import Z, agree, eval_sampling_se, loglog_slope

FIG_ID = "F8"
SEED = 8
TASK = "triangle"
GD_GAMMA = 5.0  # full-batch step size; lambda(H) in [0.015, 0.21] on the triangle task
GD_MOMENTUM = 0.6  # heavy ball: (1 - sqrt(beta))^2 <= gamma lambda <= (1 + sqrt(beta))^2 for all of H's spectrum,
                   # so every mode contracts by ~sqrt(beta) = 0.77 per step
N_TEACHERS = ("onehot", "dirichlet:1")
COLUMNS = ["panel", "series", "kind", "x", "value", "se", "converged"]


def _settings(quick: bool) -> dict:
    if quick:
        return dict(ns=(150, 600), noise_n=600, alphas=(1.0,), nu_fracs=(0.25, 1.0), chains=12, steps=120, eval_n=2000,
                    eval_m=2000, n_mc=8000)
    return dict(ns=(300, 1000, 3000, 10_000), noise_n=1000, alphas=(0.3, 1.0, 3.0, 10.0), nu_fracs=(0.25, 0.5, 1.0, 2.0),
                chains=40, steps=240, eval_n=10_000, eval_m=8000, n_mc=50_000)


def _train(task, student, teacher: str, n: int, c: dict) -> dict:
    """Full-batch GD on n points with frozen targets; returns excess risk / accuracy with SEs."""
    s = c["steps"]
    when = Every(max(1, s // 4), s)
    run = sgd.run(task=TASK, student="linear", gauge="pinned", teacher=teacher, gamma=GD_GAMMA, momentum=GD_MOMENTUM,
                  regime="finite", n=n,
                  batch=n, sampling="shuffle", noise="frozen", init="optimum", steps=s, chains=c["chains"],
                  eval_n=c["eval_n"], seed=SEED, dtype="float64", instruments=[ExcessRisk(when), Calibration(when)])
    ok = np.asarray(run.diverged_step) < 0
    _, risk = run.values("excess_risk")
    _, acc = run.values("accuracy")
    end, mid = risk[-1, ok], risk[-2, ok]
    R = int(ok.sum())
    se_chain = float(end.std(ddof=1) / math.sqrt(R))
    se_eval = eval_sampling_se(task, student, run.theta_final[ok], c["eval_n"], SEED, m=c["eval_m"])
    change = float(np.max(np.abs(end - mid)) / max(float(np.mean(np.abs(end))), 1e-300))
    loss = acc[0, ok] - acc[-1, ok]
    return dict(value=float(end.mean()), se=math.hypot(se_chain, se_eval), converged=bool(change < 1e-3 or end.max() < 1e-12),
                acc=float(acc[-1, ok].mean()), acc_se=float(acc[-1, ok].std(ddof=1) / math.sqrt(R)),
                acc_star=float(acc[0, ok].mean()), acc_loss=float(loss.mean()), acc_loss_se=float(loss.std(ddof=1) / math.sqrt(R)))


def make(quick: bool, out: Path) -> list[Path]:
    """Write F8.png, F8.csv and F8.claims.csv into `out`; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = _settings(quick)
    task = synthetic.make_task(TASK)
    student = Linear(task, gauge="pinned", dtype=torch.float64)
    H = constants.hessian_at_optimum(task, student, n_mc=c["n_mc"], seed=SEED)
    cov: dict[str, np.ndarray] = {}

    def e18(spec: str, n: int) -> float:
        if spec not in cov:
            cov[spec] = predictions.gradient_noise(task, student, T.parse_teacher(spec), n_mc=c["n_mc"], seed=SEED).C
        return stationary.finite_n(H, cov[spec], n)[1]

    nu_c = predictions.critical_noise(task, student, n_mc=c["n_mc"], seed=SEED)
    nu_gen = e18("onehot", 1) / e18("additive:1", 1)  # E18 is linear in nu for additive noise
    results: dict[tuple[str, int], dict] = {}

    def measure(spec: str, n: int) -> dict:
        if (spec, n) not in results:
            results[(spec, n)] = _train(task, student, spec, n, c)
        return results[(spec, n)]

    rows: list[dict] = []
    claims: list[dict] = []
    base = (f"triangle, linear pinned, float64, frozen targets, full-batch GD (gamma={GD_GAMMA:g}, momentum {GD_MOMENTUM:g}, "
            f"{c['steps']} steps) "
            f"from theta*, {c['chains']} chains (own training set each)")

    def add(panel, series, kind, x, value, se=math.nan, conv=None):
        rows.append(dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, converged=conv))

    for spec in N_TEACHERS:  # (a) excess risk vs n
        vals, ses = [], []
        for n in c["ns"]:
            m = measure(spec, n)
            pred = e18(spec, n)
            add("n", spec, "measured", n, m["value"], m["se"], m["converged"])
            add("n", spec, "E18", n, pred)
            vals.append(m["value"]), ses.append(m["se"])
            if spec == "onehot":
                claims.append(dict(claim=f"E18 tr(H^-1 C)/(2n) = p/(2n) for onehot labels, n={n}",
                                   configuration=f"{base}; p={student.num_params}; converged={m['converged']}",
                                   predicted=pred, measured=m["value"], measured_se=m["se"], ratio=m["value"] / pred,
                                   verdict=agree(m["value"], m["se"], pred)))
        slope, slope_se = loglog_slope(c["ns"], vals, ses)
        claims.append(dict(claim=f"E18: excess risk ~ 1/n (log-log slope), {spec}",
                           configuration=f"{base}; n in {', '.join(map(str, c['ns']))}", predicted=-1.0, measured=slope,
                           measured_se=slope_se, ratio=-slope, verdict=agree(slope, slope_se, -1.0)))

    n0 = c["noise_n"]
    ref = measure("onehot", n0)
    e_ref = e18("onehot", n0)
    add("levels", "onehot", "measured", n0, ref["value"], ref["se"], ref["converged"])
    add("levels", "onehot E18", "predicted", n0, e_ref)
    add("levels", "onehot accuracy", "measured", n0, ref["acc"], ref["acc_se"])
    add("accuracy", "onehot", "measured", math.nan, ref["acc"], ref["acc_se"])
    add("accuracy loss", "onehot", "measured", math.nan, ref["acc_loss"], ref["acc_loss_se"])
    add("accuracy loss", "onehot", "E18", math.nan, e_ref)
    add("levels", "theta* accuracy (eval sample)", "measured", n0, ref["acc_star"])
    add("levels", "Bayes accuracy (exact)", "predicted", n0, float(task.bayes_accuracy().value))
    add("levels", "nu_c (E10)", "predicted", n0, nu_c.value, nu_c.se)
    add("levels", "nu where E18(additive) = E18(onehot)", "predicted", n0, nu_gen)
    bcp = measure("bcp", n0)
    add("levels", "bcp", "measured", n0, bcp["value"], bcp["se"], bcp["converged"])
    claims.append(dict(claim="Prop. 2: with bcp targets theta* is the exact empirical minimiser (excess risk 0 to machine precision)",
                       configuration=f"{base}; n={n0}", predicted=0.0, measured=bcp["value"], measured_se=bcp["se"],
                       ratio=math.nan, verdict="agrees" if abs(bcp["value"]) <= 1e-12 else "disagrees"))

    nus = [round(f * nu_c.value, 5) for f in c["nu_fracs"]]
    for name, levels_, xs in (("dirichlet", c["alphas"], lambda v: 1.0 + v), ("additive", nus, lambda v: v)):
        vals, ses, xx = [], [], []
        for v in levels_:
            spec = f"{name}:{v:g}"
            m = measure(spec, n0)
            add(name, spec, "measured", v, m["value"], m["se"], m["converged"])
            add(name, spec, "E18", v, e18(spec, n0))
            add("accuracy", spec, "measured", v, m["acc"], m["acc_se"])
            add("accuracy loss", spec, "measured", v, m["acc_loss"], m["acc_loss_se"])
            add("accuracy loss", spec, "E18", v, e18(spec, n0))
            vals.append(m["value"]), ses.append(m["se"]), xx.append(xs(v))
        if len(levels_) >= 2:
            slope, slope_se = loglog_slope(xx, vals, ses)
            want = -1.0 if name == "dirichlet" else 1.0
            claims.append(dict(claim=("E18 + E8: excess risk ~ 1/(1+alpha) (slope in log(1+alpha)), dirichlet" if name == "dirichlet"
                                      else "E18 + E7: excess risk linear in nu (log-log slope), additive"),
                               configuration=f"{base}; n={n0}; levels {', '.join(f'{v:g}' for v in levels_)}",
                               predicted=want, measured=slope, measured_se=slope_se, ratio=slope / want,
                               verdict=agree(slope, slope_se, want)))
        if name == "additive":  # nu* where the measured additive excess risk (fit ~ nu) equals onehot's
            a = np.asarray(vals) / np.asarray(xx)
            w = (np.asarray(xx) / np.asarray(ses)) ** 2
            a_hat, a_se = float(np.sum(w * a) / np.sum(w)), float(1.0 / math.sqrt(np.sum(w)))
            nu_star = ref["value"] / a_hat
            nu_star_se = nu_star * math.hypot(ref["se"] / ref["value"], a_se / a_hat)
            claims.append(dict(claim="E18 crossover: frozen additive noise generalises like onehot labels at nu* (fit excess = a nu)",
                               configuration=f"{base}; n={n0}; E10's nu_c (equal sigma^2) = {nu_c.value:.4g}",
                               predicted=nu_gen, measured=nu_star, measured_se=nu_star_se, ratio=nu_star / nu_gen,
                               verdict=agree(nu_star, nu_star_se, nu_gen)))
    low = f"additive:{nus[0]:g}"
    m = measure(low, n0)
    r = m["value"] / ref["value"]
    r_se = r * math.hypot(m["se"] / m["value"], ref["se"] / ref["value"])
    r_pred = e18(low, n0) / e_ref
    verdict = "holds" if r + Z * r_se < 1.0 else ("fails" if r - Z * r_se > 1.0 else "inconclusive")
    claims.append(dict(claim=f"additive noise below nu_c beats onehot: excess-risk ratio {low} / onehot < 1 (4 SE)",
                       configuration=f"{base}; n={n0}; nu = {c['nu_fracs'][0]:g} nu_c, nu_c (E10) = {nu_c.value:.4g}; "
                                     "predicted = E18 ratio", predicted=r_pred, measured=r, measured_se=r_se, ratio=r / r_pred,
                       verdict=verdict))
    if 1.0 in c["nu_fracs"]:
        at = measure(f"additive:{nus[c['nu_fracs'].index(1.0)]:g}", n0)
        r = at["value"] / ref["value"]
        r_se = r * math.hypot(at["se"] / at["value"], ref["se"] / ref["value"])
        r_pred = e18(f"additive:{nus[c['nu_fracs'].index(1.0)]:g}", n0) / e_ref
        claims.append(dict(claim="at nu_c (equal sigma^2, E10) frozen additive noise generalises worse than onehot: "
                                 "excess-risk ratio additive / onehot = E18's tr(H^-1 C_add) / tr(H^-1 C_onehot)",
                           configuration=f"{base}; n={n0}; nu = nu_c = {nu_c.value:.4g}", predicted=r_pred, measured=r,
                           measured_se=r_se, ratio=r / r_pred, verdict=agree(r, r_se, r_pred)))
    claims.append(dict(claim="accuracy lost to label noise: accuracy(theta*) - accuracy(student), onehot (bcp loses 0)",
                       configuration=f"{base}; n={n0}; paired on {c['eval_n']} eval points", predicted=0.0,
                       measured=ref["acc_loss"], measured_se=ref["acc_loss_se"], ratio=math.nan, verdict="finding"))
    claims.append(dict(claim=f"accuracy lost to label noise, {low} ({c['nu_fracs'][0]:g} nu_c)",
                       configuration=f"{base}; n={n0}; paired on {c['eval_n']} eval points", predicted=0.0,
                       measured=m["acc_loss"], measured_se=m["acc_loss_se"], ratio=math.nan, verdict="finding"))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    csv = out / f"{FIG_ID}.csv"
    frame.to_csv(csv, index=False)
    png = _figure(frame, out, quick, c)
    return [png, csv, write_claims(out, FIG_ID, claims)]


def _figure(frame: pd.DataFrame, out: Path, quick: bool, c: dict) -> Path:
    fig, axes = plots.new_figure(2, 2)
    pick = lambda panel, kind=None, series=None: frame[(frame.panel == panel) & ((frame.kind == kind) if kind else True)  # noqa: E731
                                                       & ((frame.series == series) if series else True)]
    lv = {r.series: r for r in pick("levels").itertuples()}
    ax = axes[0, 0]
    for i, spec in enumerate(N_TEACHERS):
        m, e = pick("n", "measured", spec), pick("n", "E18", spec)
        nb.measured_points(ax, m.x, m.value, m.se, label=f"{spec} measured", color=f"C{i}")
        nb.prediction(ax, e.x, e.value, label=f"E18 {spec}", color=f"C{i}", marker="x")
    nb.loglog(ax, "training-set size n", "excess risk F(theta_n) - F* (nats)", "(a) excess risk vs n")
    for ax, name, xlabel in ((axes[0, 1], "additive", "frozen additive noise nu"), (axes[1, 0], "dirichlet", "Dirichlet alpha")):
        m, e = pick(name, "measured"), pick(name, "E18")
        nb.measured_points(ax, m.x, m.value, m.se, label=f"{name} measured", color="C2" if name == "additive" else "C1")
        nb.prediction(ax, e.x, e.value, label="E18", color="k", marker="x")
        level(ax, lv["onehot"].value, lv["onehot"].se, label="onehot measured (+-2 SE)", color="C0")
        level(ax, lv["onehot E18"].value, label="onehot E18", color="C0", style="--")
        if name == "additive":
            nb.thresholds(ax, {"nu_c (E10)": (lv["nu_c (E10)"].value, lv["nu_c (E10)"].se),
                               "E18 crossover": (lv["nu where E18(additive) = E18(onehot)"].value, 0.0)})
        nb.loglog(ax, xlabel, "excess risk (nats)", f"({'b' if name == 'additive' else 'c'}) {name}, n={c['noise_n']}", fontsize=5.5)
    ax = axes[1, 1]
    for i, name in enumerate(("onehot", "dirichlet", "additive")):
        m = pick("accuracy loss", "measured")
        m = m[m.series.str.startswith(name)]
        e = pick("accuracy loss", "E18")
        e = e[e.series.str.startswith(name)]
        nb.measured_points(ax, e.value, m.value, m.se, label=name, color=("C0", "C1", "C2")[i], marker="osD"[i])
    ax.axhline(0.0, color="0.4", lw=0.8, label="bcp (theta* exactly: no loss)")
    ax.set_xscale("log")
    nb.labels(ax, "noise level: the targets' E18 excess risk",
              "accuracy(theta*) - accuracy(student)", f"(d) accuracy lost to noise, n={c['noise_n']}", fontsize=6)
    caption = (f"F8 ({'quick' if quick else 'full'}): triangle task, linear softmax student (pinned gauge), float64, frozen "
               f"targets, full-batch heavy-ball GD to convergence from theta*; {c['chains']} chains, each with its own training set. "
               f"Excess risk = mean KL(p||q) on {c['eval_n']} eval points; bars +-2 SE (chains + eval sample). "
               f"E18 = tr(H^-1 C)/(2n). seed {SEED}.")
    return plots.save(fig, out, FIG_ID, caption)
