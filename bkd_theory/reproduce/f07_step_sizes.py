"""F7, step sizes: the largest convergent gamma for bcp vs onehot targets (DESIGN 2.7, 2.8, E19).

Configuration: triangle task, linear softmax student in the pinned gauge, float64, online regime,
batch 1; every chain starts at theta* + 1.0 N(0, I) (`init="perturbed"`, the same start for both
teachers: same seed, same chain streams).

**Convergent** (stated once, used for both teachers): a step size gamma is convergent when no chain
becomes non-finite within `steps` and the mean over chains of F - F* over the last 10 % of the run is
at most tau = F0 / 10, where F0 is the mean initial excess risk: SGD reduced the excess risk at
least tenfold. For bcp targets (interpolation) a convergent run goes to F* itself; for onehot
targets it can only reach the E17 neighborhood, so onehot's largest convergent gamma is where that
neighborhood reaches tau.

Search: gamma = 1/(2 calL) (T3's largest step) times `factor`^j until the first non-convergent
gamma, a few more points for the curve, then bisection in log gamma inside the last bracket. The
reported value is the crossing of tau interpolated in log gamma between the final bracket's ends,
with SE = sqrt(delta-method SE from the chains' SE at the two ends + bracket width^2 / 12).

Predictions: 1/calL (T1) and 1/(2 calL) (T3) with calL from E12 on a stated n = 1e4 sample (Gaussian
inputs are unbounded, so calL grows with n), the E19 top-Lyapunov-exponent threshold of linearised
bcp SGD (`theory.lyapunov_threshold`), the mean-square threshold gamma_ms of linearised SGD
(`theory.stationary.mean_square_threshold`) and, for onehot, the gamma where the next-order E17
neighborhood reaches tau.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import synthetic

from .. import plots, sgd
from ..instruments import Every, ExcessRisk
from ..plots import neighborhood as nb
from ..plots.theorems import points_with_errors
from ..students import Linear
from ..theory import constants, lyapunov_threshold, predictions, stationary
from ..theory import predict as theory_predict
from . import write_claims
from .f06_neighborhood import Z, agree, crossing

FIG_ID = "F7"
SEED = 7
TASK = "triangle"
TEACHERS = ("bcp", "onehot")
COLORS = {"bcp": "C0", "onehot": "C1"}
INIT_SCALE = 1.0
REDUCTION = 10.0  # convergent: mean final F - F* <= F0 / REDUCTION
MAX_GRID = 16  # grid points before giving up on finding a non-convergent gamma
COLUMNS = ["panel", "series", "kind", "x", "value", "se", "convergent", "diverged_chains"]


def _settings(quick: bool) -> dict:
    if quick:
        return dict(chains=8, steps=800, observations=20, factor=4.0, extra=1, bisect=2, eval_n=1000,
                    lyap_steps=1000, lyap_replicas=4, n_mc=8000, n_u=2048,
                    n_ms=2048, ms_repeats=3, grid=8)
    return dict(chains=32, steps=3000, observations=50, factor=2.0, extra=2, bisect=4, eval_n=2000,
                lyap_steps=4000, lyap_replicas=8, n_mc=50_000, n_u=4096,
                n_ms=16_384, ms_repeats=6, grid=16)


def _final(teacher: str, gamma: float, c: dict) -> dict:
    """One run; the mean F - F* over the last 10 % of the run with its SE across chains, and F0."""
    every = max(1, c["steps"] // c["observations"])
    run = sgd.run(task=TASK, student="linear", gauge="pinned", teacher=teacher, gamma=gamma, init="perturbed",
                  init_scale=INIT_SCALE, steps=c["steps"], chains=c["chains"], eval_n=c["eval_n"], seed=SEED,
                  dtype="float64", instruments=[ExcessRisk(Every(every, c["steps"]))])
    s = run.summary(window=0.1)["quantities"]["excess_risk"]
    _, vals = run.values("excess_risk")
    return dict(value=float(s["value"]), se=float(s["se"]), f0=float(np.mean(vals[0])), diverged=run.diverged_chains)


def _next_order(pred, U: np.ndarray, Q: np.ndarray, gamma: float) -> float:
    """Next-order E17 (`corrected_covariance`); NaN where the linearised second moment does not exist."""
    cs = stationary.corrected_covariance(pred.H, pred.C, U, gamma, Q=Q)
    return cs.excess_risk if gamma < cs.gamma_ms else math.nan


def _search(teacher: str, gamma0: float, tau_of, c: dict, log: list[dict]) -> tuple[float, float, dict]:
    """Grid then bisection (module docstring); returns (largest convergent gamma, SE, results by gamma)."""
    res: dict[float, dict] = {}

    def at(g: float) -> dict:
        if g not in res:
            res[g] = _final(teacher, g, c)
            tau = tau_of(res[g])
            res[g]["convergent"] = res[g]["diverged"] == 0 and res[g]["value"] <= tau
            log.append(dict(panel="risk", series=teacher, kind="measured", x=g, value=res[g]["value"], se=res[g]["se"],
                            convergent=res[g]["convergent"], diverged_chains=res[g]["diverged"]))
        return res[g]

    g, first_bad = gamma0, None
    for _ in range(MAX_GRID):
        if not at(g)["convergent"] and first_bad is None:
            first_bad = g
        if first_bad is not None and g >= first_bad * c["factor"] ** c["extra"] * (1 - 1e-9):
            break
        g *= c["factor"]
    if first_bad is None or first_bad == gamma0:
        g_last = max(res) if first_bad is None else gamma0
        return g_last, math.nan, res
    lo, hi = first_bad / c["factor"], first_bad
    for _ in range(c["bisect"]):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if at(mid)["convergent"] else (lo, mid)
    tau = tau_of(res[lo])
    x, x_se = crossing([lo, hi], [res[lo]["value"], res[hi]["value"]], [res[lo]["se"], res[hi]["se"]], tau)
    if not math.isfinite(x):  # non-monotone inside the bracket: take its geometric middle
        x, x_se = math.sqrt(lo * hi), 0.0
    return x, math.hypot(x_se, (hi - lo) / math.sqrt(12.0)), res


def make(quick: bool, out: Path) -> list[Path]:
    """Write F7.png, F7.csv and F7.claims.csv into `out`; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = _settings(quick)
    task = synthetic.make_task(TASK)
    student = Linear(task, gauge="pinned", dtype=torch.float64)
    pred = theory_predict(task, student, "onehot", gamma=0.01, n_mc=c["n_mc"], seed=SEED, correction=False)
    g_t1, g_t3 = pred.gamma_max_T1, pred.gamma_max_T3
    lt = lyapunov_threshold(task, student, gamma_range=(g_t1, 500 * g_t1), steps=c["lyap_steps"],
                            replicas=c["lyap_replicas"], seed=SEED)
    Q = constants.range_basis(student.num_params, constants.null_basis(student))
    # gamma_ms depends on fourth moments of x (heavy-tailed): independent Monte Carlo repeats give its SE
    ms = [stationary.mean_square_threshold(pred.H, predictions.hessian_factors(task, student, n_mc=c["n_ms"], seed=SEED + 100 * j), Q=Q)
          for j in range(c["ms_repeats"])]
    g_ms, g_ms_se = float(np.mean(ms)), float(np.std(ms, ddof=1) / math.sqrt(len(ms)))
    U = predictions.hessian_factors(task, student, n_mc=c["n_u"], seed=SEED)

    rows: list[dict] = []
    f0_ref: dict[str, float] = {}

    def tau_of(r: dict) -> float:
        f0_ref.setdefault("f0", r["f0"])  # same init for every run (same seed and chain streams)
        return f0_ref["f0"] / REDUCTION

    found = {t: _search(t, g_t3, tau_of, c, rows) for t in TEACHERS}
    tau = f0_ref["f0"] / REDUCTION

    # onehot: where the (next-order) E17 neighborhood reaches tau
    grid = np.geomspace(g_t3, 0.9 * g_ms, c["grid"])
    e17 = np.array([stationary.neighborhood_excess_risk(pred.sigma2.value, g) for g in grid])
    nxt = np.array([_next_order(pred, U, Q, g) for g in grid])
    g_e17, _ = crossing(grid, e17, np.zeros_like(grid), tau)
    g_next, _ = crossing(grid, nxt, np.zeros_like(grid), tau)
    for g, a, b in zip(grid, e17, nxt):
        rows.append(dict(panel="risk", series="onehot", kind="E17", x=g, value=a, se=math.nan))
        rows.append(dict(panel="risk", series="onehot", kind="E17 next order", x=g, value=b, se=math.nan))
    for ex in (lt.coarse, lt.fine):
        for g, v, s in zip(ex.gammas, ex.exponents, ex.se):
            rows.append(dict(panel="lyapunov", series="bcp (linearised)", kind="E19 exponent", x=g, value=v, se=s))
    levels = {"1/(2 calL) (T3)": g_t3, "1/calL (T1)": g_t1, "E19 Lyapunov threshold": lt.gamma.value,
              "gamma_ms (mean-square, linearised)": g_ms, "tau": tau, "F0": f0_ref["f0"],
              "onehot: E17 reaches tau": g_e17, "onehot: next-order E17 reaches tau": g_next}
    for k, v in levels.items():
        se = lt.gamma.se if k.startswith("E19") else (g_ms_se if k.startswith("gamma_ms") else math.nan)
        rows.append(dict(panel="levels", series=k, kind="predicted" if k not in ("tau", "F0") else "threshold", x=math.nan,
                         value=v, se=se))
    for t in TEACHERS:
        rows.append(dict(panel="levels", series=f"{t}: largest convergent gamma", kind="measured", x=math.nan,
                         value=found[t][0], se=found[t][1]))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    csv = out / f"{FIG_ID}.csv"
    frame.to_csv(csv, index=False)

    base = (f"triangle, linear pinned, float64, online, b=1, init theta* + {INIT_SCALE:g} N(0,I), {c['chains']} chains x "
            f"{c['steps']} steps; convergent: no chain non-finite and mean F-F* over the last 10 % <= F0/{REDUCTION:g} "
            f"= {tau:.3g}")
    (gb, gb_se, _), (go, go_se, _) = found["bcp"], found["onehot"]
    calL_txt = f"calL = {pred.calL:.4g} (E12 on n={pred.calL_n})"
    claims = [
        dict(claim="T1: bcp converges at least up to 1/calL; measured largest convergent gamma (ratio = how far beyond)",
             configuration=f"{base}; {calL_txt}", predicted=g_t1, measured=gb, measured_se=gb_se, ratio=gb / g_t1,
             verdict="holds" if gb + Z * gb_se >= g_t1 else "fails"),
        dict(claim="T3: onehot converges (to a neighborhood) at least up to 1/(2 calL); measured largest convergent gamma",
             configuration=f"{base}; {calL_txt}", predicted=g_t3, measured=go, measured_se=go_se, ratio=go / g_t3,
             verdict="holds" if go + Z * go_se >= g_t3 else "fails"),
        dict(claim="E19: the top Lyapunov exponent of linearised bcp SGD changes sign at bcp's largest convergent gamma",
             configuration=f"{base}; {lt.gamma.method}", predicted=lt.gamma.value, measured=gb, measured_se=gb_se,
             ratio=gb / lt.gamma.value, verdict=agree(gb, gb_se, lt.gamma.value, lt.gamma.se)),
        dict(claim="onehot: largest convergent gamma is where the next-order E17 neighborhood reaches tau",
             configuration=f"{base}; plain E17 gives {g_e17:.3g}; gamma_ms = {g_ms:.3g} +- {g_ms_se:.2g}", predicted=g_next, measured=go,
             measured_se=go_se, ratio=go / g_next if math.isfinite(g_next) else math.nan,
             verdict=agree(go, go_se, g_next, rtol=0.10) if math.isfinite(g_next) else "finding"),
        dict(claim="bcp / onehot ratio of largest convergent gammas (the theorems' ranges give 2)",
             configuration=base, predicted=2.0, measured=gb / go,
             measured_se=(gb / go) * math.hypot(gb_se / gb, go_se / go), ratio=gb / go / 2.0, verdict="finding"),
    ]
    png = _figure(frame, out, quick, c, levels, found)
    return [png, csv, write_claims(out, FIG_ID, claims)]


def _figure(frame: pd.DataFrame, out: Path, quick: bool, c: dict, levels: dict, found: dict) -> Path:
    fig, axes = plots.new_figure(3, width=3.6)
    ax = axes[0, 0]
    for t in TEACHERS:
        m = frame[(frame.panel == "risk") & (frame.series == t) & (frame.kind == "measured")].sort_values("x")
        nb.measured_points(ax, m.x, m.value, m.se, label=f"{t} measured", color=COLORS[t], floor=nb.FLOOR)
    for kind, style in (("E17", "--"), ("E17 next order", ":")):
        e = frame[(frame.panel == "risk") & (frame.kind == kind)]
        nb.prediction(ax, e.x, e.value, label=f"onehot {kind}", color=COLORS["onehot"], style=style)
    ax.axhline(levels["tau"], color="0.3", lw=0.9, label=f"tau = F0/{REDUCTION:g}")
    nb.thresholds(ax, {k: (levels[k], 0.0) for k in ("1/(2 calL) (T3)", "1/calL (T1)", "gamma_ms (mean-square, linearised)")})
    nb.thresholds(ax, {"E19 Lyapunov threshold": (levels["E19 Lyapunov threshold"], 0.0)}, colors={"E19 Lyapunov threshold": "C3"})
    for t in TEACHERS:
        g, se = found[t][0], found[t][1]
        points_with_errors(ax, [g], [levels["tau"]], [0.0], xerr=[0.0 if not math.isfinite(se) else se],
                           label=f"{t}: largest convergent", color=COLORS[t], marker="D")
    nb.loglog(ax, "step size gamma", "mean F - F* over the last 10 % (nats)", "(a) convergence vs gamma", legend=False)
    axes[0, 1].axis("off")
    axes[0, 1].legend(*ax.get_legend_handles_labels(), loc="center", fontsize=6.5, title="(a)", title_fontsize=7)
    ax = axes[0, 2]
    ly = frame[frame.panel == "lyapunov"].sort_values("x")
    nb.measured_points(ax, ly.x, ly.value, ly.se, label="top Lyapunov exponent (E19, simulated)", color="C3")
    ax.axhline(0.0, color="0.4", lw=0.8)
    nb.thresholds(ax, {"E19 threshold": (levels["E19 Lyapunov threshold"], float(frame[frame.series == "E19 Lyapunov threshold"].se.iloc[0])),
                       "bcp largest convergent (measured)": (found["bcp"][0], found["bcp"][1])},
                  colors={"E19 threshold": "C3", "bcp largest convergent (measured)": "C0"})
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-3)
    nb.labels(ax, "step size gamma", "lambda(gamma) per step (symlog)", "(b) E19: linearised bcp SGD", fontsize=6)
    caption = (f"F7 ({'quick' if quick else 'full'}): triangle task, linear softmax student (pinned gauge), float64, online, "
               f"batch 1; {c['chains']} chains x {c['steps']} steps from theta* + {INIT_SCALE:g} N(0,I); convergent = all "
               f"chains finite and mean F-F* over the last 10 % <= F0/{REDUCTION:g}. Bars +-2 SE; open markers: <= 1e-12. "
               f"calL: E12 on n=1e4. seed {SEED}.")
    return plots.save(fig, out, FIG_ID, caption)
