"""F10, Monte Carlo teachers: student noise vs the number S of teacher samples (DESIGN 2.2, 2.5; E9, E17).

A Bayesian teacher's Monte Carlo predictive is modelled by `mc(S, base)`: the mean of S independent
draws of a stochastic teacher. Its covariance is Cov_base / S, so sigma^2 = sigma_base^2 / S (E9)
and the stationary neighborhood E17 gamma sigma^2 / 4 shrinks as 1/S too.

Configuration: triangle task, linear softmax student in the pinned gauge, float64; bases onehot and
dirichlet(1).
- (a) gradient noise at theta*: measured by `instruments.sigma2_at_optimum` (Monte Carlo over fresh
  (x, t), normal-theory SE), predicted by `theory.predictions.sigma2_closed_form` (E9 of E6/E8).
- (b) stationary E[F - F*] of SGD (online, batch 1, start at theta*, run to stationarity; measured as
  in F6 by `f06_neighborhood.stationary_excess_risk`), predicted by E17 with sigma_mc^2 (and its
  next-order correction, which scales by the same 1/S because the targets sum to 1).
Claims: log-log slope -1 in S for both quantities and both bases, and E9/E17 at the largest S.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

import synthetic

from .. import plots
from .. import teachers as T
from ..instruments import sigma2_at_optimum
from ..plots import neighborhood as nb
from ..rng import stream
from ..students import Linear
from ..theory import constants, predictions, stationary
from . import write_claims
from .f06_neighborhood import E17_RTOL, agree, loglog_slope, stationary_excess_risk

FIG_ID = "F10"
SEED = 10
TASK = "triangle"
BASES = ("onehot", "dirichlet:1")
COLORS = {"onehot": "C0", "dirichlet:1": "C1"}
COLUMNS = ["panel", "series", "kind", "x", "value", "se", "stationary", "steps"]


def _settings(quick: bool) -> dict:
    if quick:
        return dict(S=(1, 4, 16), gamma=0.1, chains=16, burn=1.5, min_steps=400, observations=20, eval_n=1000,
                    eval_m=2000, n_sigma=20_000, n_mc=8000, n_u=2048)
    return dict(S=(1, 2, 4, 8, 16, 32), gamma=0.05, chains=64, burn=3.0, min_steps=1000, observations=40, eval_n=5000,
                eval_m=8000, n_sigma=200_000, n_mc=50_000, n_u=4096)


def make(quick: bool, out: Path) -> list[Path]:
    """Write F10.png, F10.csv and F10.claims.csv into `out`; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = _settings(quick)
    task = synthetic.make_task(TASK)
    student = Linear(task, gauge="pinned", dtype=torch.float64)
    H = constants.hessian_at_optimum(task, student, n_mc=c["n_mc"], seed=SEED)
    mu = float(np.linalg.eigvalsh(H)[0])
    U = predictions.hessian_factors(task, student, n_mc=c["n_u"], seed=SEED)
    g = c["gamma"]
    rows: list[dict] = []
    claims: list[dict] = []
    base_cfg = (f"triangle, linear pinned, float64, online, b=1, gamma={g:g}, start at theta*, {c['chains']} chains; "
                f"sigma^2 measured on {c['n_sigma']:,} (x, t) per S")
    key = 0
    for base in BASES:
        s2m, s2se, fm, fse = [], [], [], []
        for S in c["S"]:
            spec = f"mc:{S}:{base}"
            teacher = T.parse_teacher(spec)
            pred = predictions.sigma2_closed_form(task, student, teacher, n_mc=c["n_mc"], seed=SEED)
            key += 1
            meas = sigma2_at_optimum(student, task, teacher, c["n_sigma"], stream(SEED, "figure.F10", key))
            e17 = stationary.neighborhood_excess_risk(pred.value, g)
            C = predictions.gradient_noise(task, student, teacher, n_mc=c["n_mc"], seed=SEED).C
            nxt = stationary.corrected_covariance(H, C, U, g).excess_risk
            st = stationary_excess_risk(task, student, spec, g, mu=mu, chains=c["chains"], burn=c["burn"],
                                        min_steps=c["min_steps"], observations=c["observations"], eval_n=c["eval_n"],
                                        seed=SEED, eval_m=c["eval_m"])
            rows += [dict(panel="sigma2", series=base, kind="measured", x=S, value=meas.value, se=meas.se),
                     dict(panel="sigma2", series=base, kind="E9", x=S, value=pred.value, se=pred.se),
                     dict(panel="neighborhood", series=base, kind="measured", x=S, value=st.value, se=st.se,
                          stationary=st.stationary, steps=st.steps),
                     dict(panel="neighborhood", series=base, kind="E17", x=S, value=e17, se=g * pred.se / 4.0),
                     dict(panel="neighborhood", series=base, kind="E17 next order", x=S, value=nxt)]
            s2m.append(meas.value), s2se.append(meas.se), fm.append(st.value), fse.append(st.se)
            last = (S, pred, meas, e17, st)
        for what, vals, ses in (("gradient noise sigma^2 at theta* (E9)", s2m, s2se), ("stationary E[F - F*] (E9 + E17)", fm, fse)):
            slope, slope_se = loglog_slope(c["S"], vals, ses)
            claims.append(dict(claim=f"{what} ~ 1/S (log-log slope), mc(S, {base})",
                               configuration=f"{base_cfg}; S in {', '.join(map(str, c['S']))}", predicted=-1.0,
                               measured=slope, measured_se=slope_se, ratio=-slope, verdict=agree(slope, slope_se, -1.0)))
        S, pred, meas, e17, st = last
        claims.append(dict(claim=f"E9 sigma_base^2 / S at S={S}, mc(S, {base})", configuration=base_cfg,
                           predicted=pred.value, measured=meas.value, measured_se=meas.se, ratio=meas.value / pred.value,
                           verdict=agree(meas.value, meas.se, pred.value, pred.se)))
        claims.append(dict(claim=f"E17 with sigma_mc^2 at S={S}, mc(S, {base}) (agrees: within 4 SE or 10 %)",
                           configuration=(f"{base_cfg}; {st.steps} steps, stationary={st.stationary}; ratio "
                                          f"{st.value / e17:.3f} +- {st.se / e17:.3f}"), predicted=e17, measured=st.value,
                           measured_se=st.se, ratio=st.value / e17,
                           verdict=agree(st.value, st.se, e17, g * pred.se / 4.0, rtol=E17_RTOL)))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    csv = out / f"{FIG_ID}.csv"
    frame.to_csv(csv, index=False)
    png = _figure(frame, out, quick, c)
    return [png, csv, write_claims(out, FIG_ID, claims)]


def _figure(frame: pd.DataFrame, out: Path, quick: bool, c: dict) -> Path:
    fig, axes = plots.new_figure(2, height=3.8)
    titles = {"sigma2": ("sigma^2 at theta*", "(a) gradient noise vs S (E9)"),
              "neighborhood": ("stationary E[F - F*] (nats)", f"(b) neighborhood vs S (E17), gamma={c['gamma']:g}")}
    for ax, panel in zip(axes[0], ("sigma2", "neighborhood")):
        for i, base in enumerate(BASES):
            sub = frame[(frame.panel == panel) & (frame.series == base)]
            m = sub[sub.kind == "measured"]
            nb.measured_points(ax, m.x, m.value, m.se, label=f"mc(S, {base}) measured", color=COLORS[base])
            e = sub[sub.kind != "measured"]
            for kind, style in (("E9", "--"), ("E17", "--"), ("E17 next order", ":")):
                k = e[e.kind == kind]
                if len(k):
                    nb.prediction(ax, k.x, k.value, label=kind if i == 0 else "_nolegend_", color=COLORS[base], style=style)
        nb.loglog(ax, "teacher samples S", *titles[panel])
    caption = (f"F10 ({'quick' if quick else 'full'}): triangle, linear student (pinned), float64; mc(S, onehot), mc(S, dirichlet:1). "
               f"(a) mean ||grad l(theta*)||^2 over {c['n_sigma']:,} fresh (x, t); (b) online SGD, b=1, {c['chains']} chains from "
               f"theta*, {c['burn']:g}/(gamma mu) steps, last-half average. Bars +-2 SE. seed {SEED}.")
    return plots.save(fig, out, FIG_ID, caption)
