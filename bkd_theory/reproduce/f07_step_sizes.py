"""F7, step sizes: where bcp SGD converges, E19's Lyapunov threshold, and onehot's tolerance level
(DESIGN 2.7, 2.8 E19, 2.9 "Criteria").

Triangle task, linear softmax student in the pinned gauge, float64, online, batch 1, no momentum.
Every grid point is its own run with its own seed (`base.point_seed`).

- **Converges** (DESIGN 2.9, `claims.recipes.converges`): no chain diverges and every chain's
  F - F* falls to 1e-8 of its start F0, or the tail slope of log(F - F*) over the chains not there
  yet is negative beyond 4 SE and brings them there within one more run. Runs start at theta* +
  1.0 N(0, I) and last long enough for linearised SGD's slowest mode to reach 1e-8 F0. bcp's largest
  convergent gamma is the largest grid gamma up to which every point converges (a coarse factor-2
  grid, then a linear grid inside its bracket); its bracket's upper end is the next grid point.
- **E19**: the sign change of the top Lyapunov exponent of linearised bcp SGD (`theory.lyapunov`),
  judged against (i) the sign change of the measured growth rate of ||theta - theta*|| of SGD
  started at theta* + 1e-7 N(0, I) (`E19`) and (ii) bcp's largest convergent gamma, which
  must lie below it (`E19-convergence`); `T1-range`: that gamma lies beyond T1's 1/calL.
- **onehot** never converges to F* (sigma^2 > 0), so it has no largest convergent gamma. Shown: the
  *tolerance-level* step, the largest gamma whose stationary F - F* <= F0/10 (F0 of the init scale
  1.0; a finding, beside where next-order E17 puts it), and the stability step, the largest grid
  gamma at which no chain diverges (`engine.divergence`; softmax CE gradients are bounded, and none
  diverges on the grid up to gamma = 16: a lower bound).
1/calL (T1), 1/(2 calL) (T3) and the mean-square threshold gamma_ms of linearised SGD are drawn beside.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import claims
from ..claims import recipes, thresholds
from ..plots import finish, new_figure
from ..plots import neighborhood as nb
from ..plots.theorems import points_with_errors
from .base import FRAME_COLUMNS, Result, figure, point_seed

SEED = 7
COLUMNS = [*FRAME_COLUMNS, "claim", "status", "steps"]
COLORS = {"bcp": "C0", "onehot": "C1"}
KINDS = ("E19", "E19-convergence", "T1-range", "tolerance-step", "stability-step")


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, claim: str = "",
         status: str = "", steps: int | None = None) -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, claim=claim, status=status, steps=steps)


def _base(teacher: str) -> dict:
    return {"task": "triangle", "student": "linear", "gauge": "pinned", "teacher": teacher, "init": "perturbed",
            "batch": 1, "momentum": 0.0}


@figure("F7", title="Step sizes", seed=SEED, claims=KINDS,
        summary="bcp's largest convergent gamma (F - F* to 1e-8 F0) vs E19's Lyapunov threshold and the measured "
                "growth-rate sign change; onehot's tolerance-level step; 1/calL, 1/(2 calL), gamma_ms.")
class F7:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(coarse=tuple(2.0**j for j in range(-2, 5)), refine=1, conv_chains=16, min_steps=1500, records=60,
                        growth=(3.0, 3.5, 4.0), growth_chains=16, growth_steps=1500, lyapunov_steps=2000,
                        onehot=tuple(2.0**j for j in range(-4, 2)), chains=16, burn=3.0, onehot_min_steps=400,
                        eval_n=500, eval_every=50, f0_draws=512, lyapunov_grid=8)
        return dict(coarse=tuple(2.0**j for j in range(-4, 5)), refine=7, conv_chains=64, min_steps=8000, records=200,
                    growth=(2.5, 2.75, 3.0, 3.25, 3.5, 3.75, 4.0), growth_chains=64, growth_steps=2000,
                    lyapunov_steps=32000, onehot=tuple(2.0**j for j in range(-5, 5)), chains=64, burn=4.0,
                    onehot_min_steps=2000, eval_n=2000, eval_every=100, f0_draws=4096, lyapunov_grid=16)

    @staticmethod
    def measure(s: dict) -> Result:
        rows: list[dict] = []
        seeds = iter(point_seed(SEED, i) for i in range(10_000))
        conv = _bcp_convergence(s, seeds, rows)
        growth = {**_base("bcp"), "init_scale": 1e-7, "steps": s["growth_steps"], "eval_every": 10,
                  "chains": s["growth_chains"], "eval_n": 200, "lyapunov_steps": s["lyapunov_steps"],
                  "gammas": list(s["growth"]), "seeds": [next(seeds) for _ in s["growth"]], "seed": SEED}
        onehot = {**_base("onehot"), "init_scale": 1.0, "steps": "auto", "burn": s["burn"],
                  "min_steps": s["onehot_min_steps"], "chains": s["chains"], "eval_n": s["eval_n"],
                  "eval_every": s["eval_every"], "fraction": 0.1, "f0_draws": s["f0_draws"], "seed": SEED,
                  "gammas": list(s["onehot"]), "seeds": [next(seeds) for _ in s["onehot"]]}
        records = [claims.make("E19-convergence", "E19-convergence-bcp", **conv).check(),
                   claims.make("T1-range", "T1-range-bcp", **conv).check(),
                   claims.make("E19", "E19-bcp", **growth).check(),
                   claims.make("tolerance-step", "tolerance-step-onehot", **onehot).check(),
                   claims.make("stability-step", "stability-step-onehot", **onehot).check()]
        rows += _growth_rows(records[2], growth, s)
        rows += _onehot_rows(records[3], onehot)
        rows += _level_rows(records, conv)
        return Result(pd.DataFrame(rows, columns=COLUMNS), records, notes=_notes(records))

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(2, 2)
        f = result.frame
        levels = {r.series: (r.value, r.se) for r in f[f.panel == "levels"].itertuples()}
        _draw_convergence(axes[0, 0], f, levels)
        _draw_growth(axes[0, 1], f, levels)
        _draw_onehot(axes[1, 0], f, levels)
        _draw_trajectories(axes[1, 1], f)
        return finish(fig, f"F7: triangle task, linear softmax student (pinned gauge), float64, online, batch 1; every "
                           f"point its own seed. Convergence runs: {s['conv_chains']} chains from theta* + 1.0 N(0,I), "
                           f"long enough for linearised SGD's slowest mode to reach 1e-8 F0 (>= {s['min_steps']} steps); "
                           f"converges = F - F* <= 1e-8 F0 in every chain, or tail slope < -4 SE and on course. Growth "
                           f"rates: {s['growth_chains']} chains from theta* + 1e-7 N(0,I). onehot: {s['chains']} chains, "
                           f"stationary (last half). Bars +-2 SE; calL: E12 on n = 1e4.")


def _bcp_convergence(s: dict, seeds, rows: list[dict]) -> dict:
    """The bcp convergence grid (coarse, then refined inside the coarse bracket); returns the claim config."""
    base = {**_base("bcp"), "init_scale": 1.0, "steps": "converge", "min_steps": s["min_steps"], "records": s["records"],
            "chains": s["conv_chains"], "eval_n": s["eval_n"], "lyapunov_steps": s["lyapunov_steps"], "seed": SEED}
    status = {}
    for g in s["coarse"]:
        status[g] = _point(base, g, next(seeds), rows)
    ok = [status[g][1] for g in s["coarse"]]
    i = ok.index(False) - 1 if False in ok else len(ok) - 1
    if 0 <= i < len(ok) - 1:
        lo, hi = s["coarse"][i], s["coarse"][i + 1]
        for g in np.linspace(lo, hi, s["refine"] + 2)[1:-1]:
            status[float(g)] = _point(base, float(g), next(seeds), rows)
    gammas = sorted(status)
    return {**base, "gammas": gammas, "seeds": [status[g][0] for g in gammas]}


def _point(base: dict, gamma: float, seed: int, rows: list[dict]) -> tuple[int, bool]:
    """One bcp convergence run: its frame rows (final / initial, trajectory); returns (seed, converges)."""
    cfg = recipes.convergence_steps({**base, "gamma": gamma, "seed": seed})
    o = recipes.converges(cfg)
    status = "converges" if o.info["converges"] else "not shown"
    rows.append(_row("convergence", "bcp", "measured", gamma, o.value, o.se, "E19-convergence-bcp", status, cfg["steps"]))
    k, v = recipes.run(cfg).values("excess_risk")
    med = np.log10(np.maximum(np.median(v / v[0], axis=1), recipes.ROUNDING))
    rows += [_row("trajectory", f"bcp gamma={gamma:.4g}", "measured", float(kk), float(m), claim="E19-convergence-bcp",
                  status=status) for kk, m in zip(k[::max(1, len(k) // 50)], med[::max(1, len(k) // 50)])]
    return seed, bool(o.info["converges"])


def _growth_rows(rec, cfg: dict, s: dict) -> list[dict]:
    """Measured growth rates (the claim's points) and simulated top Lyapunov exponents on a grid."""
    from ..theory.lyapunov import top_lyapunov_exponents

    m = rec.measured
    rows = [_row("growth", "bcp from theta* + 1e-7 N(0,I)", "measured", g, r, e, rec.claim.id)
            for g, r, e in zip(cfg["gammas"], m.info["growth_rates"], m.info["growth_rates_se"])] if m else []
    task, student, _ = recipes.objects(cfg)
    grid = np.linspace(min(cfg["gammas"]) * 0.8, max(cfg["gammas"]) * 1.1, s["lyapunov_grid"])
    ex = top_lyapunov_exponents(task, student, grid, steps=min(s["lyapunov_steps"], 8000), seed=SEED)
    rows += [_row("growth", "top Lyapunov exponent (E19, linearised)", "E19", g, v, e, rec.claim.id)
             for g, v, e in zip(ex.gammas, ex.exponents, ex.se)]
    return rows


def _onehot_rows(rec, cfg: dict) -> list[dict]:
    """onehot stationary F - F* (the tolerance claim's points), final / initial, E17 and its next order."""
    rows = []
    for c in recipes.points(cfg, drop=thresholds.TOLERANCE_KEYS):
        st = recipes.stationary(c, "excess_risk")
        rows.append(_row("onehot", "onehot", "measured", c["gamma"], st.value, st.se, rec.claim.id,
                         "stationary" if st.stationary else "not stationary", st.info["steps"]))
        o = recipes.converges(c)
        rows.append(_row("convergence", "onehot", "measured", c["gamma"], o.value, o.se, rec.claim.id,
                         "converges" if o.info["converges"] else "not shown", st.info["steps"]))
        sigma2 = recipes.theory({**c, "gamma": 1.0, "seed": SEED}).sigma2
        rows.append(_row("onehot", "onehot", "E17", c["gamma"], c["gamma"] * sigma2.value / 4, c["gamma"] * sigma2.se / 4))
        if c["gamma"] < recipes.theory({**c, "gamma": 1.0, "seed": SEED}).gamma_mean_square.value:
            nxt = recipes.prediction({**c, "seed": SEED}, "neighborhood_excess_risk_corrected")
            rows.append(_row("onehot", "onehot", "E17 next order", c["gamma"], nxt.value, nxt.se))
    return rows


def _level_rows(records: list, conv: dict) -> list[dict]:
    """The step sizes and levels drawn as lines: theory (T1, T3, gamma_ms, E19) and the measured ones."""
    p = recipes.theory({**conv, "gamma": 1.0, "seed": SEED})
    rec = {r.claim.kind: r for r in records}
    out = {"1/calL (T1)": (p.gamma_max_T1.value, 0.0), "1/(2 calL) (T3)": (p.gamma_max_T3.value, 0.0),
           "gamma_ms (mean-square, linearised)": (p.gamma_mean_square.value, p.gamma_mean_square.se)}
    for kind, name in (("E19", "E19"), ("tolerance-step", "tolerance step")):
        r = rec[kind]
        if r.predicted is not None:
            out[f"{name} (predicted)"] = (r.predicted.value, r.predicted.se)
            out[f"{name} (measured)"] = (r.measured.value, r.measured.se)
    c = rec["E19-convergence"].measured
    if c is not None:
        out["bcp largest convergent gamma"] = (c.value, 0.0)
        out["bcp bracket upper end"] = (c.info["bracket"][1], 0.0)
    t = rec["tolerance-step"].measured
    if t is not None:
        out["tau = F0/10"] = (t.info["level"], t.info["level_se"])
    st = rec["stability-step"].measured
    if st is not None:
        out["onehot stability step (lower bound)"] = (st.value, 0.0)
    return [_row("levels", k, "level", math.nan, v, se) for k, (v, se) in out.items()]


def _lines(ax, levels: dict, names: tuple[str, ...]) -> None:
    colors = {"E19 (predicted)": "C3", "E19 (measured)": "C2", "1/calL (T1)": "0.35", "1/(2 calL) (T3)": "0.55",
              "gamma_ms (mean-square, linearised)": "C4", "bcp largest convergent gamma": "C0",
              "tolerance step (measured)": "C1", "tolerance step (predicted)": "C5"}
    nb.thresholds(ax, {n: levels[n] for n in names if n in levels}, colors=colors)


def _draw_convergence(ax, f: pd.DataFrame, levels: dict) -> None:
    for t in ("bcp", "onehot"):
        m = f[(f.panel == "convergence") & (f.series == t)].sort_values("x")
        ok = m.status == "converges"
        for sel, what, marker in ((ok, "converges", "o"), (~ok, "convergence not shown", "x")):
            if sel.any():
                points_with_errors(ax, m.x[sel], m.value[sel], m.se[sel], label=f"{t}: {what}", color=COLORS[t],
                                   marker=marker)
    ax.axhline(-8.0, color="0.3", lw=0.8, ls=":", label="1e-8 F0 (the criterion)")
    ax.axhline(-1.0, color="C1", lw=0.8, ls=":", label="F0/10 (a tolerance)")
    _lines(ax, levels, ("1/(2 calL) (T3)", "1/calL (T1)", "gamma_ms (mean-square, linearised)", "E19 (predicted)"))
    if "bcp largest convergent gamma" in levels:
        ax.axvspan(levels["bcp largest convergent gamma"][0], levels["bcp bracket upper end"][0], color="C0", alpha=0.15,
                   lw=0, label="bcp: largest convergent gamma, bracket")
    ax.set_xscale("log")
    nb.labels(ax, "step size gamma", "log10 (F_end - F*) / (F0 - F*), mean over chains", "(a) convergence vs gamma",
              fontsize=5)


def _draw_growth(ax, f: pd.DataFrame, levels: dict) -> None:
    ly = f[(f.panel == "growth") & (f.kind == "E19")].sort_values("x")
    nb.prediction(ax, ly.x, ly.value, label="top Lyapunov exponent (E19, simulated)", color="C3", style="-")
    ax.fill_between(ly.x, ly.value - 2 * ly.se, ly.value + 2 * ly.se, color="C3", alpha=0.15, lw=0)
    m = f[(f.panel == "growth") & (f.kind == "measured")]
    nb.measured_points(ax, m.x, m.value, m.se, label="measured growth rate of ||theta - theta*||", color="C2")
    ax.axhline(0.0, color="0.4", lw=0.8)
    _lines(ax, levels, ("E19 (predicted)", "E19 (measured)", "bcp largest convergent gamma"))
    nb.labels(ax, "step size gamma", "growth rate per step", "(b) E19: bcp SGD near theta*", fontsize=5.5)


def _draw_onehot(ax, f: pd.DataFrame, levels: dict) -> None:
    m = f[(f.panel == "onehot") & (f.kind == "measured")]
    nb.measured_points(ax, m.x, m.value, m.se, label="onehot stationary E[F - F*]", color="C1")
    for kind, style in (("E17", "--"), ("E17 next order", ":")):
        e = f[(f.panel == "onehot") & (f.kind == kind)]
        nb.prediction(ax, e.x, e.value, label=kind, color="k", style=style)
    if "tau = F0/10" in levels:
        ax.axhline(levels["tau = F0/10"][0], color="0.3", lw=0.9, label="tau = F0/10 (tolerance level)")
    _lines(ax, levels, ("1/(2 calL) (T3)", "1/calL (T1)", "gamma_ms (mean-square, linearised)", "tolerance step (measured)",
                        "tolerance step (predicted)"))
    nb.loglog(ax, "step size gamma", "stationary E[F - F*] (nats)", "(c) onehot: a neighborhood, a tolerance step",
              fontsize=5)


def _draw_trajectories(ax, f: pd.DataFrame) -> None:
    tr = f[f.panel == "trajectory"]
    runs = sorted({(float(n.split("=")[1]), n, st) for n, st in zip(tr.series, tr.status)})
    first = next((i for i, (_, _, st) in enumerate(runs) if st != "converges"), len(runs))
    keep = [n for _, n, _ in runs[max(0, first - 3):first + 3]]  # three on either side of the first failure
    for i, n in enumerate(keep):
        t = tr[tr.series == n]
        ax.plot(t.x, t.value, color=f"C{i % 10}", lw=1.0, ls="-" if t.status.iloc[0] == "converges" else "--",
                label=n.replace("bcp ", "") + ("" if t.status.iloc[0] == "converges" else " (not shown)"))
    ax.axhline(-8.0, color="0.3", lw=0.8, ls=":")
    nb.labels(ax, "step k", "log10 median (F_k - F*) / F0", "(d) bcp trajectories (median chain)", fontsize=5)


def _notes(records: list) -> list[str]:
    rec = {r.claim.kind: r for r in records}
    out = []
    c, g = rec["E19-convergence"], rec["E19"]
    if c.measured is not None:
        lo, hi = c.measured.info["bracket"]
        out.append(f"bcp's largest convergent gamma (F - F* to 1e-8 F0, DESIGN 2.9) is {lo:.4g} (next grid point "
                   f"{hi:.4g} not shown convergent); E19 predicts {c.predicted.value:.4g} +- {c.predicted.se:.2g} "
                   f"({c.verdict.verdict}); that is {lo / rec['T1-range'].predicted.value:.0f} x T1's 1/calL.")
    if g.measured is not None:
        out.append(f"The measured growth rate of ||theta - theta*|| changes sign at {g.measured.value:.4g} +- "
                   f"{g.measured.se:.2g} ({g.verdict.verdict} with E19).")
    t = rec["tolerance-step"]
    if t.measured is not None:
        out.append(f"onehot never converges to F*; its tolerance-level step (stationary F - F* <= F0/10, F0 of init "
                   f"scale 1.0) is {t.measured.value:.3g} +- {t.measured.se:.2g}, next-order E17 says "
                   f"{t.predicted.value:.3g}.")
    return out
