"""F12, optimizers and temperature (DESIGN 2.10; E17, E19, E21, E22).

Triangle task, linear softmax student in the pinned gauge, float64, batch 1; every point is its own
run with its own seed (`base.point_seed`).
- (a) the stationary neighborhood E[F - F*] against gamma for one-hot labels under SGD (E17),
  heavy-ball momentum beta = 0.5 (E17 with gamma / (1 - beta)) and Adam (E21: (gamma / 4b)
  sum_i C_ii / (sqrt(C_ii / b) + eps)); library kinds "E17" and "E21".
- (b) Adam with exact BCPs and beta1 = 0: near theta* it is SGD with step gamma / eps, so its growth
  rate changes sign at gamma* = eps gamma_E19 ("E21-bcp"); full mode adds the hover level of the
  paper's Adam (beta1 = 0.9, eps = 1e-8) as a finding ("E21-bcp-hover").
- (c)-(e) the student-side KD temperature (E22, `claims.temperature.panels`): exact BCPs at T = 3
  interpolate (F - F* at rounding from a perturbed start); a teacher-only temperature tau converges
  to the floor E_x KL(p || softmax(log p / tau)); sigma^2 of a noisy soft teacher at T against
  Monte Carlo.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import claims
from ..claims import temperature
from ..plots import finish, new_figure
from ..plots import neighborhood as nb
from ..threads import single_thread
from .base import FRAME_COLUMNS, Result, figure, pair_rows, point_seed

SEED = 12
COLUMNS = [*FRAME_COLUMNS, "claim", "stationary"]
KINDS = ("E17", "E21", "E21-bcp", "E21-bcp-hover", "E22a", "E22a-labels", "E22b", "E22c", "E22c-neighborhood")
#: (label, claim kind, configuration overrides) of panel (a)
OPTIMIZERS = (("SGD", "E17", {"optimizer": "sgd", "momentum": 0.0}),
              ("heavy ball 0.5", "E17", {"optimizer": "sgd", "momentum": 0.5}),
              ("Adam", "E21", {"optimizer": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "momentum": 0.0}))
COLORS = {"SGD": "C0", "heavy ball 0.5": "C2", "Adam": "C3"}
#: E19's threshold is gamma* ~ 3.37 on triangle, so these multiples of eps bracket the Adam threshold
BCP_MULTIPLES = (3.0, 3.25, 3.5, 3.75)


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, claim: str = "",
         stationary: bool | None = None) -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, claim=claim, stationary=stationary)


@figure("F12", title="Optimizers and temperature", seed=SEED, claims=KINDS,
        summary="SGD, heavy-ball and Adam neighborhoods vs gamma (E17, E21); Adam with exact BCPs (threshold eps "
                "gamma_E19); the KD temperature: BCPs interpolate at T = 3, the tau floor, sigma^2(T) (E22).")
class F12:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(gammas=(0.02,), chains=32, eval_n=2000, burn=2.5, eps=(0.1,), bcp_chains=32, bcp_seeds=(1, 2, 3, 4),
                        hover=False, temperature_quick=True)
        return dict(gammas=(0.0025, 0.005, 0.01, 0.02), chains=64, eval_n=4000, burn=3.0, eps=(0.05, 0.1, 0.2),
                    bcp_chains=64, bcp_seeds=(1, 2, 3, 4, 5, 6), hover=True, temperature_quick=False)

    @staticmethod
    def measure(s: dict) -> Result:
        with single_thread():
            return _measure(s)

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(3, 2, height=3.6)
        f = result.frame
        _draw_optimizers(axes[0][0], f)
        _draw_bcp(axes[0][1], f)
        _draw_curve(axes[0][2], f)
        _draw_pairs(axes[1][0], f[f.panel == "floor"], "teacher temperature tau", "E[F - F*] at the end (nats)",
                    "(d) tau floor E_x KL(p || softmax(log p / tau))")
        _draw_pairs(axes[1][1], f[f.panel == "sigma2"], "student temperature T", "sigma^2 at theta_T",
                    "(e) noisy soft teacher (Dirichlet 5): sigma^2(T)")
        axes[1][2].axis("off")
        axes[1][2].text(0, 1, "\n".join(result.notes), va="top", fontsize=6.5, wrap=True)
        return finish(fig, f"F12: triangle, linear student (pinned), float64, batch 1, online; each point its own seed. "
                           f"(a) {s['chains']} chains from theta*, relaxed by e^-{s['burn']:g}, last-half mean, SE: "
                           f"chains + eval sample ({s['eval_n']}). (b) growth rate of ||theta - theta*|| over "
                           f"{len(s['bcp_seeds'])} seeds, sign change by a Wald estimator. (c)-(e): E22. Bars +-2 SE.")


def _measure(s: dict) -> Result:
    """The claims and the frame of `F12.measure`."""
    rows, records = [], []
    seeds = iter(point_seed(SEED, i) for i in range(10_000))
    for label, kind, over in OPTIMIZERS:
        for g in s["gammas"]:
            cfg = {**claims.defaults(kind)[0].config, **over, "teacher": "onehot", "gamma": g, "chains": s["chains"],
                   "eval_n": s["eval_n"], "burn": s["burn"], "init": "optimum", "init_scale": 0.0, "steps": "auto",
                   "seed": next(seeds)}
            rec = claims.make(kind, f"{kind}-{label.replace(' ', '-')}-g{g:g}", **cfg).check()
            records.append(rec)
            rows += pair_rows("optimizers", label, g, rec, "E21" if kind == "E21" else "E17")
    for eps in s["eps"]:
        cfg = {**claims.defaults("E21-bcp")[0].config, "eps": eps, "gammas": tuple(eps * m for m in BCP_MULTIPLES),
               "chains": s["bcp_chains"], "seeds": tuple(next(seeds) for _ in s["bcp_seeds"])}
        rec = claims.make("E21-bcp", f"E21-bcp-eps{eps:g}", **cfg).check()
        records.append(rec)
        rows += pair_rows("bcp", "Adam, beta1 = 0", eps, rec, "eps gamma_E19")
    if s["hover"]:
        records.append(claims.defaults("E21-bcp-hover")[0].check())
    rows, records = _temperature(s, rows, records)
    return Result(pd.DataFrame(rows, columns=COLUMNS), records, notes=_notes(records))


def _temperature(s: dict, rows: list, records: list) -> tuple[list, list]:
    """Panels (c)-(e) from `claims.temperature.panels` (its quick sizes with `temperature_quick`)."""
    out = temperature.panels(quick=s["temperature_quick"])
    records = records + out["records"]
    names = {"a": "bcp-T", "b": "floor", "c": "sigma2", "c-neighborhood": "neighborhood-T"}
    for r in out["rows"]:
        rows.append(_row(names.get(r["panel"], r["panel"]), r["series"], r["kind"], r["x"], r["value"], r["se"],
                         r["claim"]))
    c = out["curve"]
    for k, mean, top in zip(c["k"], c["mean"], c["max"]):
        rows += [_row("curve", "mean over chains", "measured", int(k), float(mean)),
                 _row("curve", "max over chains", "measured", int(k), float(top))]
    return rows, records


def _draw_optimizers(ax, f: pd.DataFrame) -> None:
    for label, _, _ in OPTIMIZERS:
        sub = f[(f.panel == "optimizers") & (f.series == label)]
        m, p = sub[sub.kind == "measured"], sub[sub.kind != "measured"]
        nb.measured_points(ax, m.x, m.value, m.se, label=f"{label} measured", color=COLORS[label])
        ax.plot(p.x, p.value, "--", marker="_", ms=14, mew=2, color=COLORS[label],
                label=f"{label}: {p.kind.iloc[0]}" if len(p) else "_nolegend_")
    nb.loglog(ax, "step size gamma", "stationary E[F - F*] (nats)", "(a) onehot: SGD, heavy ball, Adam")


def _draw_bcp(ax, f: pd.DataFrame) -> None:
    sub = f[f.panel == "bcp"]
    m, p = sub[sub.kind == "measured"], sub[sub.kind != "measured"]
    ax.errorbar(m.x, m.value, yerr=2 * m.se, fmt="o", color="C3", label="growth-rate sign change (measured)")
    ax.plot(p.x, p.value, "k--", marker="_", ms=14, mew=2, label="eps gamma_E19 (E21-bcp)")
    ax.set_xlabel("Adam eps")
    ax.set_ylabel("threshold step gamma*")
    ax.set_title("(b) Adam with exact BCPs: gamma* = eps gamma_E19", fontsize=9)
    ax.legend(fontsize=7)


def _draw_curve(ax, f: pd.DataFrame) -> None:
    sub = f[f.panel == "curve"]
    for series, style in (("mean over chains", "-"), ("max over chains", ":")):
        c = sub[sub.series == series]
        ax.plot(c.x, np.maximum(np.abs(c.value.to_numpy(float)), 1e-18), style, color="C1", label=series)
    ax.set_yscale("log")
    ax.set_xlabel("step k")
    ax.set_ylabel("|F - F*| (nats)")
    ax.set_title("(c) exact BCPs at student temperature T = 3", fontsize=9)
    ax.legend(fontsize=7)


def _draw_pairs(ax, sub: pd.DataFrame, xlabel: str, ylabel: str, title: str) -> None:
    m, p = sub[sub.kind == "measured"], sub[sub.kind == "predicted"]
    ax.errorbar(m.x, m.value, yerr=2 * m.se, fmt="o", color="C0", label="measured")
    ax.plot(p.x, p.value, "k_", markersize=14, mew=2, label="predicted")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def _notes(records: list) -> list[str]:
    out = []
    for r in records:
        if r.measured is None:
            continue
        m, p, v = r.measured, r.predicted, r.verdict.verdict
        if r.claim.kind == "E21":
            ratio = m.info.get("measured_over_E17")
            out.append(f"Adam at gamma = {r.claim.config['gamma']:g}: {m.value:.4g} +- {m.se:.2g} vs E21 {p.value:.4g} "
                       f"({v}); {ratio:.3f} of SGD's E17 at the same gamma.")
        elif r.claim.kind == "E21-bcp":
            out.append(f"bcp Adam, eps = {r.claim.config['eps']:g}: growth sign change at {m.value:.4g} +- {m.se:.2g} vs "
                       f"eps gamma_E19 = {p.value:.4g} ({v}).")
        elif r.claim.kind == "E21-bcp-hover":
            out.append(f"bcp Adam (beta1 0.9, eps 1e-8) at gamma = {r.claim.config['gamma']:g} hovers at F - F* = "
                       f"{m.value:.3g} +- {m.se:.2g} ({m.info.get('over_gamma2', math.nan):.3g} gamma^2): no convergence.")
        elif r.claim.kind in ("E22a", "E22b", "E22c"):
            out.append(f"{r.claim.id}: {m.value:.4g} +- {m.se:.2g} vs {p.value:.4g} ({v}).")
    return out
