"""F3, Prop. 3: predicted vs measured gradient noise sigma_T^2 at theta* (DESIGN 2.5, E4-E10).

Configuration: the linear softmax student in the pinned gauge, float64, at theta*, on the triangle
task and on the paper task with standardised inputs. Teachers: onehot, dirichlet(alpha), additive(nu),
tangent(nu) and mc(S, base).

- Prediction: `theory.predictions.sigma2_closed_form` (E6-E9 and the pinned-gauge E11 factors), a
  Monte Carlo mean over inputs x with its SE; the general route E4 (`gradient_noise`: Jacobians and
  the teacher's exact moments) is recorded beside it as `predicted_general`.
- Measurement: `instruments.sigma2_at_optimum`, the mean of ||grad l(theta*; x, t)||^2 over fresh
  (x, y) from the task and targets t sampled from the teacher, through `student.per_sample_grads`.
  SE: normal theory over i.i.d. samples (squared gradient norms here have Gaussian-quadratic tails,
  so the normal interval is adequate at these sample sizes; DESIGN 2.9).
- Verdict: "agrees" when |measured - predicted| <= 4 sqrt(SE_m^2 + SE_p^2) (both are Monte Carlo).
- E10: nu_c = `critical_noise`; additive noise at nu_c is measured against one-hot labels.

Panels: (a) measured vs predicted, log-log with y = x; (b) sigma^2 vs nu for additive and tangent
noise on the triangle task, with the onehot level and nu_c; (c) sigma^2 vs alpha for Dirichlet.
CSV columns: panel, series, kind, x, value, se. kind: measured, predicted (closed form),
predicted_general (E4 general route) or predicted_line (the curves of panels b/c); x: nu or alpha
in panels b/c, NaN in panel a.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import synthetic

from .. import plots
from .. import teachers as T
from ..instruments import sigma2_at_optimum
from ..plots import theorems as tp
from ..rng import stream
from ..students import Linear
from ..theory import predictions as pred
from . import write_claims

FIG_ID = "F3"
SEED = 3
Z = 4.0  # verdict tolerance in standard errors (contract)

TRIANGLE_TEACHERS = ("onehot", "dirichlet:0.3", "dirichlet:1", "dirichlet:3", "dirichlet:10", "additive:0.005",
                     "additive:0.02", "additive:0.1", "tangent:0.01", "tangent:0.05", "mc:4:dirichlet:1", "mc:4:onehot")
PAPER_TEACHERS = ("onehot", "dirichlet:1", "additive:0.01", "tangent:0.01", "mc:4:dirichlet:1")


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"mc": 20_000, "mc_paper": 10_000, "pred": 20_000, "general": 4_096}
    return {"mc": 400_000, "mc_paper": 200_000, "pred": 400_000, "general": 50_000}


def _agree(measured: float, m_se: float, predicted: float, p_se: float) -> str:
    se = math.hypot(m_se, p_se)
    return "agrees" if abs(measured - predicted) <= Z * se else "disagrees"


def _measure(task, student, teacher: T.Teacher, n: int, key: int) -> tuple:
    est = sigma2_at_optimum(student, task, teacher, n, stream(SEED, "figure.F3", key))
    return est.value, est.se


def make(quick: bool, out: Path) -> list[Path]:
    """Write F3.png, F3.csv and F3.claims.csv into `out`; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = _sizes(quick)
    rows: list[dict] = []
    claims: list[dict] = []
    scatter: list[tuple[str, float, float, float, float]] = []
    tasks = {"triangle": synthetic.make_task("triangle"), "paper (standardised)": synthetic.make_task("paper", standardize=True)}
    key = 0
    onehot_level: dict[str, tuple[float, float]] = {}
    unit: dict[str, tuple[float, float]] = {}
    for tname, task in tasks.items():
        student = Linear(task, gauge="pinned", dtype=torch.float64)
        specs = TRIANGLE_TEACHERS if tname == "triangle" else PAPER_TEACHERS
        mc_n = n["mc"] if tname == "triangle" else n["mc_paper"]
        for spec in specs:
            teacher = T.parse_teacher(spec)
            p = pred.sigma2_closed_form(task, student, teacher, n_mc=n["pred"], seed=SEED)
            g = pred.gradient_noise(task, student, teacher, n_mc=n["general"], seed=SEED, matrix=False).sigma2
            key += 1
            m, m_se = _measure(task, student, teacher, mc_n, key)
            series = f"{tname}/{spec}"
            rows += [dict(panel="a", series=series, kind="predicted", x=math.nan, value=p.value, se=p.se),
                     dict(panel="a", series=series, kind="predicted_general", x=math.nan, value=g.value, se=g.se),
                     dict(panel="a", series=series, kind="measured", x=math.nan, value=m, se=m_se)]
            scatter.append((tname, p.value, p.se, m, m_se))
            claims.append(dict(claim=f"Prop. 3 ({p.method.split(' closed')[0]}): sigma^2 at theta*, {spec}",
                               configuration=f"{tname}, linear pinned, float64; MC n={mc_n}",
                               predicted=p.value, measured=m, measured_se=m_se, ratio=m / p.value,
                               verdict=_agree(m, m_se, p.value, p.se)))
            if spec == "onehot":
                onehot_level[tname] = (p.value, p.se)
        if tname == "triangle":
            for form in ("additive", "tangent"):
                u = pred.sigma2_closed_form(task, student, T.parse_teacher(f"{form}:1"), n_mc=n["pred"], seed=SEED)
                unit[form] = (u.value, u.se)
            nu_c = pred.critical_noise(task, student, n_mc=n["pred"], seed=SEED)
            key += 1
            m, m_se = _measure(task, student, T.Additive(nu_c.value), mc_n, key)
            o, o_se = onehot_level[tname]
            claims.append(dict(claim="E10: additive noise at nu_c is as noisy as one-hot labels",
                               configuration=f"triangle, linear pinned; nu_c = {nu_c.value:.5g} +- {nu_c.se:.2g}; MC n={mc_n}",
                               predicted=o, measured=m, measured_se=m_se, ratio=m / o, verdict=_agree(m, m_se, o, o_se)))
            rows += [dict(panel="b", series="nu_c", kind="predicted", x=nu_c.value, value=o, se=nu_c.se),
                     dict(panel="b", series="additive:nu_c", kind="measured", x=nu_c.value, value=m, se=m_se)]
    tri = [r for r in rows if r["panel"] == "a" and r["series"].startswith("triangle/")]
    for r in tri:
        spec = r["series"].split("/", 1)[1]
        name, _, par = spec.partition(":")
        if name in ("additive", "tangent"):
            rows.append(dict(r, panel="b", series=name, x=float(par)))
        elif name == "dirichlet":
            rows.append(dict(r, panel="c", series=name, x=float(par)))
    o, o_se = onehot_level["triangle"]
    nus, alphas = np.geomspace(1e-3, 0.3, 50), np.geomspace(0.1, 30, 50)
    for form in ("additive", "tangent"):
        rows += [dict(panel="b", series=form, kind="predicted_line", x=v, value=unit[form][0] * v, se=unit[form][1] * v) for v in nus]
    rows += [dict(panel="c", series="dirichlet", kind="predicted_line", x=a, value=o / (1 + a), se=o_se / (1 + a)) for a in alphas]
    frame = pd.DataFrame(rows, columns=["panel", "series", "kind", "x", "value", "se"])
    csv = out / f"{FIG_ID}.csv"
    frame.to_csv(csv, index=False)

    fig, axes = plots.new_figure(3)
    ax = axes[0, 0]
    tp.predicted_vs_measured(ax, [s[1] for s in scatter], [s[2] for s in scatter], [s[3] for s in scatter],
                             [s[4] for s in scatter], [s[0] for s in scatter])
    ax.set_title("(a) sigma^2 at theta*: all teachers")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for form, tag, color in (("additive", "E7", "C0"), ("tangent", "tangent form", "C1")):
        line = frame[(frame.panel == "b") & (frame.series == form) & (frame.kind == "predicted_line")]
        tp.prediction_line(ax, line.x, line.value, label=f"{form} ({tag})", color=color)
        sub = frame[(frame.panel == "b") & (frame.series == form) & (frame.kind == "measured")]
        tp.points_with_errors(ax, sub.x, sub.value, sub.se, label=f"{form} measured", color=color)
    nu_row = frame[(frame.panel == "b") & (frame.series == "nu_c")].iloc[0]
    tp.level(ax, o, o_se, label="onehot (E6)", color="k")
    tp.level(ax, nu_row.x, nu_row.se, label=f"nu_c = {nu_row.x:.3g} (E10)", color="C3", vertical=True)
    mrow = frame[(frame.panel == "b") & (frame.series == "additive:nu_c")].iloc[0]
    tp.points_with_errors(ax, [mrow.x], [mrow.value], [mrow.se], label="additive at nu_c", color="C3", marker="s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("noise variance nu")
    ax.set_ylabel("sigma^2 at theta*")
    ax.set_title("(b) additive noise, triangle")
    ax.legend(fontsize=6.5)
    ax = axes[0, 2]
    line = frame[(frame.panel == "c") & (frame.kind == "predicted_line")]
    tp.prediction_line(ax, line.x, line.value, label="onehot / (1 + alpha) (E8)", color="C2")
    sub = frame[(frame.panel == "c") & (frame.kind == "measured")]
    tp.points_with_errors(ax, sub.x, sub.value, sub.se, label="dirichlet measured", color="C2")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Dirichlet concentration alpha")
    ax.set_ylabel("sigma^2 at theta*")
    ax.set_title("(c) Dirichlet teachers, triangle")
    ax.legend(fontsize=7)
    caption = (f"F3 ({'quick' if quick else 'full'}): linear softmax student, pinned gauge, float64, at theta*; triangle and "
               f"paper (standardised) tasks. Measured: mean ||grad l||^2 over {n['mc']:,} (triangle) / {n['mc_paper']:,} "
               f"(paper) sampled (x, t); predicted: E6-E9 closed forms over {n['pred']:,} inputs. Bars: +-2 SE. "
               f"seed {SEED}.")
    png = plots.save(fig, out, FIG_ID, caption)
    return [png, csv, write_claims(out, FIG_ID, claims)]
