"""F6, the neighborhood: stationary E[F - F*] vs gamma and vs teacher noise (DESIGN 2.7-2.8, E16, E17).

Configuration: triangle task, linear softmax student in the pinned gauge, float64, online regime
(a fresh (x, t) every step), batch 1, no momentum; every chain starts at theta* and runs to
stationarity: `steps = max(min_steps, burn / (gamma mu))` with mu = lambda_min(H), so the slowest
mode has relaxed by e^-burn at the start of the averaging window (the last half of the run).

- Measurement: `instruments.ExcessRisk` (F - F* = mean KL(p || q) on a fixed evaluation sample),
  each chain's time average over the last half of the run is one sample (`Run.summary`); SE across
  chains (DESIGN 2.9), combined with the evaluation sample's own sampling error (`eval_sampling_se`:
  the sample is shared by all chains, so that error does not average out across chains).
- Predictions: E17 gamma sigma_T^2 / 4 (`theory.stationary.neighborhood_excess_risk`, sigma_T^2 from
  `theory.predict`), its next-order correction (`corrected_covariance`), and the T4 bound E16
  (`theory.bounds.neighborhood`), drawn only where T4 admits gamma (gamma <= mu / (2 L calL)).
- Verdicts: "agrees" when |measured - predicted| <= 4 SE, or (for E17, a small-gamma approximation)
  when the ratio is within 10 % (`theory.report.RTOL`); "holds"/"fails" for the bound.

The measurement helpers here (`stationary_excess_risk`, `eval_sampling_se`, `loglog_slope`,
`crossing`, `agree`) are shared with F7, F8 and F10.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

import synthetic

from .. import plots, sgd
from .. import teachers as T
from ..instruments import Every, ExcessRisk
from ..losses import kl_divergence
from ..plots import neighborhood as nb
from ..rng import stream
from ..students import Linear
from ..theory import bounds, constants, predictions, report, stationary
from ..theory import predict as theory_predict
from . import write_claims

FIG_ID = "F6"
SEED = 6
Z = 4.0  # verdict tolerance in standard errors (contract)
E17_RTOL = report.RTOL["E17"]
TASK = "triangle"
GAMMA_TEACHERS = ("onehot", "dirichlet:1", "additive:0.02")
COLUMNS = ["panel", "series", "kind", "x", "value", "se", "stationary", "steps"]
COLORS = {"onehot": "C0", "dirichlet:1": "C1", "additive:0.02": "C2"}


def _settings(quick: bool) -> dict:
    if quick:
        return dict(gammas=(0.1, 0.3), fit_max=0.3, noise_gamma=0.1, alphas=(1.0, 4.0), nus=(0.005, 0.02),
                    chains=16, burn=1.5, min_steps=400, observations=20, eval_n=1000, eval_m=2000, n_mc=8000, n_u=2048,
                    bound_steps=1000, bound_chains=8, fine=0)
    return dict(gammas=(0.025, 0.05, 0.1, 0.2, 0.4, 0.8), fit_max=0.1, noise_gamma=0.05, alphas=(0.3, 1.0, 3.0, 10.0),
                nus=(0.005, 0.02, 0.08), chains=80, burn=2.5, min_steps=1000, observations=40, eval_n=5000,
                eval_m=8000, n_mc=50_000, n_u=4096, bound_steps=8000, bound_chains=32, fine=24)


# ----------------------------------------------------------------------------- shared helpers
def agree(measured: float, m_se: float, predicted: float, p_se: float = 0.0, *, rtol: float = 0.0) -> str:
    """"agrees" when |measured - predicted| <= 4 sqrt(m_se^2 + p_se^2) or |ratio - 1| <= rtol."""
    ok = abs(measured - predicted) <= Z * math.hypot(m_se, p_se)
    if rtol and predicted:
        ok = ok or abs(measured / predicted - 1.0) <= rtol
    return "agrees" if ok else "disagrees"


def loglog_slope(x: Sequence[float], y: Sequence[float], se: Sequence[float]) -> tuple[float, float]:
    """Weighted least-squares slope of log y on log x (weights (y / se)^2) and its SE from the
    measurement SEs (valid with 2 points; conservative when the points share random numbers)."""
    x, y, se = (np.asarray(v, float) for v in (x, y, se))
    keep = (x > 0) & (y > 0) & np.isfinite(se) & (se > 0)
    if keep.sum() < 2:
        return math.nan, math.nan
    X = np.stack([np.ones(keep.sum()), np.log(x[keep])], axis=1)
    w = (y[keep] / se[keep]) ** 2
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    beta = cov @ X.T @ (w * np.log(y[keep]))
    return float(beta[1]), float(math.sqrt(cov[1, 1]))


def crossing(x: Sequence[float], y: Sequence[float], y_se: Sequence[float], level: float) -> tuple[float, float]:
    """First x where y (measured, with SEs) rises through `level`, interpolated linearly in log x.

    Returns (x*, SE) with the delta-method SE from the two bracketing points, or (nan, nan) when y
    never crosses `level` from below.
    """
    x, y, s = (np.asarray(v, float) for v in (x, y, y_se))
    for i in range(1, len(x)):
        if y[i - 1] < level <= y[i]:
            d = y[i] - y[i - 1]
            t = (level - y[i - 1]) / d
            span = math.log(x[i] / x[i - 1])
            lx = math.log(x[i - 1]) + t * span
            dt = math.hypot((level - y[i]) / d**2 * s[i - 1], (level - y[i - 1]) / d**2 * s[i])
            return math.exp(lx), math.exp(lx) * abs(span) * dt
    return math.nan, math.nan


def eval_sampling_se(task, student, theta: torch.Tensor | np.ndarray, eval_n: int, seed: int, *, m: int = 8000) -> float:
    """SE of F - F* measured on a fixed evaluation sample of `eval_n` points shared by all chains.

    The instrument's mean KL over the sample differs from E_x KL by (1/N) sum_j (k(x_j) - E k), with
    k(x) = E_theta KL(p(x) || q_theta(x)) over the chains' law; that error is common to all chains.
    Its SD, std_x k(x) / sqrt(N), is estimated on `m` fresh inputs with k(x) the mean over the given
    parameters `theta` `[R, P]` (slightly conservative: the chain noise adds to std_x).
    """
    theta = torch.as_tensor(np.asarray(theta), dtype=student.dtype)
    x, _ = task.sample(m, stream(seed, "figure.F6", 99))
    log_p = torch.as_tensor(task.log_bcp(x), dtype=student.dtype)
    xs = torch.as_tensor(x, dtype=student.dtype)
    k = torch.zeros(m, dtype=student.dtype)
    for lo in range(0, theta.shape[0], 16):
        th = theta[lo:lo + 16]
        log_q = student.log_probs(th, xs.expand(th.shape[0], *xs.shape))
        k += kl_divergence(log_p.expand_as(log_q), log_q).sum(0)
    k /= theta.shape[0]
    return float(k.std()) / math.sqrt(eval_n)


@dataclass(frozen=True)
class Stationary:
    """Stationary E[F - F*] of one configuration: value and SE (chains and eval sample combined)."""

    value: float
    se: float
    se_chains: float
    se_eval: float
    stationary: bool | None
    steps: int
    chains: int
    diverged: int


def stationary_excess_risk(task, student, teacher: str, gamma: float, *, mu: float, chains: int, burn: float,
                           min_steps: int, observations: int, eval_n: int, seed: int, eval_m: int = 8000,
                           task_name: str = TASK) -> Stationary:
    """Run chains from theta* to stationarity (`sgd.run`, online, batch 1) and return the stationary
    E[F - F*] over the last half of the run (module docstring)."""
    steps = max(int(min_steps), int(math.ceil(burn / (gamma * mu))))
    every = max(1, steps // observations)
    run = sgd.run(task=task_name, student="linear", gauge="pinned", teacher=teacher, gamma=gamma, init="optimum",
                  steps=steps, chains=chains, eval_n=eval_n, eval_every=every, seed=seed, dtype="float64",
                  instruments=[ExcessRisk(Every(every, steps))])
    s = run.summary()["quantities"]["excess_risk"]
    ok = np.asarray(run.diverged_step) < 0
    se_eval = eval_sampling_se(task, student, run.theta_final[ok], eval_n, seed, m=eval_m) if ok.any() else math.nan
    return Stationary(float(s["value"]), math.hypot(s["se"], se_eval), float(s["se"]), se_eval, s["stationary"], steps,
                      int(chains), run.diverged_chains)


# ----------------------------------------------------------------------------- the figure
def make(quick: bool, out: Path) -> list[Path]:
    """Write F6.png, F6.csv and F6.claims.csv into `out`; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = _settings(quick)
    task = synthetic.make_task(TASK)
    student = Linear(task, gauge="pinned", dtype=torch.float64)
    preds = {s: theory_predict(task, student, s, gamma=c["gammas"][0], n_mc=c["n_mc"], seed=SEED, correction=False)
             for s in GAMMA_TEACHERS}
    p0 = preds["onehot"]
    mu = p0.H_eig_min
    U = predictions.hessian_factors(task, student, n_mc=c["n_u"], seed=SEED)
    Q = constants.range_basis(student.num_params, constants.null_basis(student))

    weights: dict[str, np.ndarray] = {}

    def next_order(spec: str, gamma: float) -> float:
        if spec not in weights:
            weights[spec] = predictions.target_sum_sq(task, T.parse_teacher(spec), n_mc=c["n_u"], seed=SEED)
        w = weights[spec]
        cs = stationary.corrected_covariance(preds[spec].H, preds[spec].C, U, gamma, weights=w, Q=Q)
        return cs.excess_risk if gamma < cs.gamma_ms else math.nan

    cache: dict[tuple[str, float], Stationary] = {}

    def measure(spec: str, gamma: float) -> Stationary:
        if (spec, gamma) not in cache:
            cache[(spec, gamma)] = stationary_excess_risk(
                task, student, spec, gamma, mu=mu, chains=c["chains"], burn=c["burn"], min_steps=c["min_steps"],
                observations=c["observations"], eval_n=c["eval_n"], seed=SEED, eval_m=c["eval_m"])
        return cache[(spec, gamma)]

    rows: list[dict] = []
    claims: list[dict] = []
    base = f"triangle, linear pinned, float64, online, b=1, start at theta*, {c['chains']} chains"

    def add(panel, series, kind, x, value, se=math.nan, st=None, steps=None):
        rows.append(dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, stationary=st, steps=steps))

    # (a, b) E[F - F*] vs gamma
    for spec in GAMMA_TEACHERS:
        s2 = preds[spec].sigma2
        g_ok, m_ok, se_ok = [], [], []
        for g in c["gammas"]:
            m = measure(spec, g)
            e17 = stationary.neighborhood_excess_risk(s2.value, g)
            e17_se = g * s2.se / 4.0
            add("gamma", spec, "measured", g, m.value, m.se, m.stationary, m.steps)
            add("gamma", spec, "E17", g, e17, e17_se)
            add("gamma", spec, "E17 next order", g, next_order(spec, g))
            g_ok.append(g), m_ok.append(m.value), se_ok.append(m.se)
        g0 = c["gammas"][0]
        m0 = cache[(spec, g0)]
        e17 = stationary.neighborhood_excess_risk(s2.value, g0)
        claims.append(dict(
            claim=f"E17 gamma sigma^2/(4b) at small gamma, {spec} (agrees: within 4 SE or 10 %)",
            configuration=(f"{base}; gamma={g0:g}, {m0.steps} steps, stationary={m0.stationary}; sigma^2={s2.value:.4g}; "
                           f"ratio {m0.value / e17:.3f} +- {m0.se / e17:.3f}"),
            predicted=e17, measured=m0.value, measured_se=m0.se, ratio=m0.value / e17,
            verdict=agree(m0.value, m0.se, e17, g0 * s2.se / 4.0, rtol=E17_RTOL)))
        fit = [i for i, g in enumerate(g_ok) if g <= c["fit_max"] * (1 + 1e-9)]
        slope, slope_se = loglog_slope(np.array(g_ok)[fit], np.array(m_ok)[fit], np.array(se_ok)[fit])
        claims.append(dict(
            claim=f"E17: E[F - F*] grows linearly in gamma (log-log slope), {spec}",
            configuration=f"{base}; WLS fit over gamma in [{g_ok[0]:g}, {c['fit_max']:g}]",
            predicted=1.0, measured=slope, measured_se=slope_se, ratio=slope, verdict=agree(slope, slope_se, 1.0)))
        ratio = np.array(m_ok) / np.array([stationary.neighborhood_excess_risk(s2.value, g) for g in g_ok])
        r_se = ratio * np.array(se_ok) / np.array(m_ok)
        g_meas, g_meas_se = crossing(g_ok, ratio, r_se, 1.0 + E17_RTOL)
        fine = np.geomspace(g_ok[0], g_ok[-1], max(c["fine"], 2 * len(g_ok)))
        nxt_abs = np.array([next_order(spec, g) for g in fine])
        nxt = nxt_abs / np.array([stationary.neighborhood_excess_risk(s2.value, g) for g in fine])
        g_pred, _ = crossing(fine, np.nan_to_num(nxt, nan=np.inf), np.zeros_like(fine), 1.0 + E17_RTOL)
        for g, a, r in zip(fine, nxt_abs, nxt):
            add("ratio", spec, "E17 next order / E17", g, r)
            add("gamma", spec, "E17 next order (curve)", g, a)
        found = math.isfinite(g_meas)
        claims.append(dict(
            claim=f"E17 breaks down: smallest gamma where measured / E17 exceeds 1.1, {spec} (predicted: next-order correction)",
            configuration=f"{base}; gamma grid {', '.join(f'{g:g}' for g in g_ok)}"
                          + ("" if found else f"; measured ratio stays below 1.1 up to gamma={g_ok[-1]:g}"),
            predicted=g_pred, measured=g_meas if found else g_ok[-1], measured_se=g_meas_se,
            ratio=(g_meas / g_pred) if found and math.isfinite(g_pred) else math.nan, verdict="finding"))

    # E16 (T4) at the edge of its step-size range; it bounds E[F_k - F*] at every k from theta* (e0 = 0)
    gb = p0.gamma_max_T4
    bound = bounds.neighborhood("T4", gb, mu=mu, L=p0.H_eig_max, calL=p0.calL, sigma2=p0.sigma2.value)
    run = sgd.run(task=TASK, student="linear", gauge="pinned", teacher="onehot", gamma=gb, init="optimum",
                  steps=c["bound_steps"], chains=c["bound_chains"], eval_n=c["eval_n"], seed=SEED, dtype="float64",
                  instruments=[ExcessRisk(Every(max(1, c["bound_steps"] // 20), c["bound_steps"]))])
    steps_b, vals = run.values("excess_risk")
    means = np.nanmean(vals, axis=1)
    ses = np.nanstd(vals, axis=1, ddof=1) / math.sqrt(vals.shape[1])
    i = int(np.argmax(means))
    se_b = math.hypot(ses[i], eval_sampling_se(task, student, run.theta_final, c["eval_n"], SEED, m=c["eval_m"]))
    for g in np.geomspace(gb / 2, gb, 6):
        add("gamma", "onehot", "E16 (T4)", g, bounds.neighborhood("T4", g, mu=mu, L=p0.H_eig_max, calL=p0.calL, sigma2=p0.sigma2.value))
    add("gamma", "onehot", "measured max_k (T4 range)", gb, float(means[i]), se_b, None, c["bound_steps"])
    claims.append(dict(
        claim="T4 bound E16 L gamma sigma^2/mu holds for E[F_k - F*] (every recorded k, from theta*, onehot)",
        configuration=(f"triangle, linear pinned, onehot, gamma = mu/(2 L calL) = {gb:.4g} (T4's largest; calL E12 on n="
                       f"{p0.calL_n}; mu, L: H at theta*), {c['bound_steps']} steps, {c['bound_chains']} chains; kappa={p0.kappa:.3g}; "
                       f"every gamma >= {c['gammas'][0]:g} above is outside T4's range"),
        predicted=bound, measured=float(means[i]), measured_se=se_b, ratio=float(means[i]) / bound,
        verdict="holds" if means[i] <= bound + Z * se_b else "fails"))

    # (c, d) E[F - F*] vs noise at a fixed gamma
    gn = c["noise_gamma"]
    for name, levels, key in (("additive", c["nus"], lambda v: v), ("dirichlet", c["alphas"], lambda v: 1.0 + v)):
        xs, ms, ss = [], [], []
        for v in levels:
            spec = f"{name}:{v:g}"
            s2 = preds[spec].sigma2 if spec in preds else predictions.gradient_noise(
                task, student, T.parse_teacher(spec), n_mc=c["n_mc"], seed=SEED, matrix=False).sigma2
            m = measure(spec, gn)
            add(name, spec, "measured", v, m.value, m.se, m.stationary, m.steps)
            add(name, spec, "E17", v, stationary.neighborhood_excess_risk(s2.value, gn), gn * s2.se / 4.0)
            xs.append(key(v)), ms.append(m.value), ss.append(m.se)
        slope, slope_se = loglog_slope(xs, ms, ss)
        want = 1.0 if name == "additive" else -1.0
        claims.append(dict(
            claim=("E17 + E7: E[F - F*] linear in nu (log-log slope), additive" if name == "additive"
                   else "E17 + E8: E[F - F*] proportional to 1/(1+alpha) (slope in log(1+alpha)), dirichlet"),
            configuration=f"{base}; gamma={gn:g}; levels {', '.join(f'{v:g}' for v in levels)}",
            predicted=want, measured=slope, measured_se=slope_se, ratio=slope / want, verdict=agree(slope, slope_se, want)))

    frame = pd.DataFrame(rows, columns=COLUMNS)
    csv = out / f"{FIG_ID}.csv"
    frame.to_csv(csv, index=False)
    png = _figure(frame, out, quick, c, gb)
    return [png, csv, write_claims(out, FIG_ID, claims)]


def _figure(frame: pd.DataFrame, out: Path, quick: bool, c: dict, gamma_t4: float) -> Path:
    fig, axes = plots.new_figure(2, 2)
    ax = axes[0, 0]
    sel = lambda **kw: frame[np.logical_and.reduce([frame[k] == v for k, v in kw.items()])]  # noqa: E731
    for i, spec in enumerate(GAMMA_TEACHERS):
        col = COLORS[spec]
        m = sel(panel="gamma", series=spec, kind="measured")
        nb.measured_points(ax, m.x, m.value, m.se, label=f"{spec} measured", color=col)
        e = sel(panel="gamma", series=spec, kind="E17")
        nb.prediction(ax, e.x, e.value, label="E17 gamma sigma^2/4 (dashed)" if i == 0 else "_nolegend_", color=col)
        r = sel(panel="gamma", series=spec, kind="E17 next order (curve)")
        nb.prediction(ax, r.x, r.value, label="next order (dotted)" if i == 0 else "_nolegend_", color=col, style=":")
    b = sel(panel="gamma", kind="E16 (T4)")
    nb.bound_segment(ax, b.x, b.value, gamma_t4, label="E16 bound (T4 range only)", color="C3")
    bm = sel(panel="gamma", kind="measured max_k (T4 range)")
    nb.measured_points(ax, bm.x, bm.value, bm.se, label="onehot max_k E[F_k-F*] (T4 range)", color="C3", marker="s")
    nb.loglog(ax, "step size gamma", "stationary E[F - F*] (nats)", "(a) neighborhood vs gamma", fontsize=5.5)
    ax = axes[0, 1]
    for i, spec in enumerate(GAMMA_TEACHERS):
        col = COLORS[spec]
        m = sel(panel="gamma", series=spec, kind="measured")
        e = sel(panel="gamma", series=spec, kind="E17")
        ratio = m.value.to_numpy() / e.value.to_numpy()
        nb.ratio_panel(ax, m.x, ratio, ratio * m.se.to_numpy() / m.value.to_numpy(), label=spec, color=col,
                       tolerance=E17_RTOL)
        r = sel(panel="ratio", series=spec)
        nb.prediction(ax, r.x, r.value, label="next order / E17" if i == 0 else "_nolegend_", color=col, style=":")
    ax.set_xscale("log")
    nb.labels(ax, "step size gamma", "measured / E17", "(b) measured / E17 (band: 10 %)", fontsize=6)
    for ax, name, xlabel in ((axes[1, 0], "additive", "noise variance nu"), (axes[1, 1], "dirichlet", "Dirichlet alpha")):
        m = sel(panel=name, kind="measured")
        e = sel(panel=name, kind="E17")
        nb.measured_points(ax, m.x, m.value, m.se, label=f"{name} measured", color="C2" if name == "additive" else "C1")
        nb.prediction(ax, e.x, e.value, label="E17 (E7)" if name == "additive" else "E17 (E8: onehot/(1+alpha))", color="k")
        nb.loglog(ax, xlabel, "stationary E[F - F*] (nats)", f"({'c' if name == 'additive' else 'd'}) {name} noise, "
                  f"gamma={c['noise_gamma']:g}")
    caption = (f"F6 ({'quick' if quick else 'full'}): triangle task, linear softmax student (pinned gauge), float64, online, "
               f"batch 1; {c['chains']} chains from theta*, steps = max({c['min_steps']}, {c['burn']:g}/(gamma mu)), average "
               f"over the last half. Measured: mean KL(p||q) on {c['eval_n']} eval points; bars +-2 SE (chains + eval "
               f"sample). E17 = gamma sigma^2/4; E16 only where T4 admits gamma. seed {SEED}.")
    return plots.save(fig, out, FIG_ID, caption)
