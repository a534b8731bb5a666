"""F2, Props. 1 and 2: one risk for every unbiased teacher, and no gradient noise at theta* with bcp.

Configuration: the triangle task, the linear softmax student in the pinned gauge, float64.

- Prop. 1 (E2): along the line theta* + s v (v a fixed random unit vector), the one-hot risk (mean
  CE against labels y sampled with x) and the bcp risk (mean CE against p(x)) are computed on the
  same n inputs, and both are compared with F* + E_x KL(p || q) where F* = H(Y|X) comes from the
  task (quadrature). The SE of "risk - (F* + mean KL)" is the paired one, std(l_i - KL_i) / sqrt(n)
  (same x for both terms); the SE of "onehot - bcp" is std(l_onehot,i - l_bcp,i) / sqrt(n).
- Prop. 2: per-sample gradients at theta* (`student.per_sample_grads`) vanish for bcp targets
  (to float64 rounding, ~1e-15) and not for one-hot labels, whose mean squared norm is sigma^2 (E6).
  Also the empirical-risk gradient at theta* on the whole sample (a finite training set).
Verdicts: "agrees" when |measured - predicted| <= 4 SE; "holds" when a bcp gradient norm is below
`ZERO_TOL` (1e-12: rounding of logits of size ~10 in float64 gives ~1e-15).

Panels: (a) risks vs s; (b) onehot - bcp risk vs s with +-2 SE bars; (c) histogram of
log10 ||grad l(theta*; x, t)|| for both targets. CSV columns: panel, series, kind, x, value, se
(x: s in panels a/b, the log10-norm bin centre in panel c, where value is a count).
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
from ..losses import cross_entropy, kl_divergence
from ..plots import theorems as tp
from ..rng import stream
from ..students import Linear
from ..theory import constants as const
from ..theory import predictions as pred
from . import write_claims

FIG_ID = "F2"
SEED = 2
Z = 4.0  # verdict tolerance in standard errors (contract)
ZERO_TOL = 1e-12


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.to(torch.float64)
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def make(quick: bool, out: Path) -> list[Path]:
    """Write F2.png, F2.csv and F2.claims.csv into `out`; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = 20_000 if quick else 400_000
    s_grid = np.linspace(-3.0, 3.0, 13 if quick else 25)
    task = synthetic.make_task("triangle")
    student = Linear(task, gauge="pinned", dtype=torch.float64)
    star = student.optimum(task)
    v = stream(SEED, "figure.F2", 0).standard_normal(student.num_params)
    v = torch.as_tensor(v / np.linalg.norm(v), dtype=torch.float64)
    x, y = task.sample(n, stream(SEED, "figure.F2", 1))
    log_p_np = task.log_bcp(x)
    p = np.exp(log_p_np)
    rng_t = stream(SEED, "figure.F2", 2)
    t_onehot = torch.as_tensor(T.OneHot().sample(p, y, rng_t), dtype=torch.float64)[None]
    t_bcp = torch.as_tensor(T.BCP().sample(p, y, rng_t), dtype=torch.float64)[None]
    xs = torch.as_tensor(x, dtype=torch.float64)[None]
    log_p = torch.as_tensor(log_p_np, dtype=torch.float64)[None]
    f_star = const.f_star(task)

    rows: list[dict] = []
    worst = {key: (0.0, None) for key in ("diff", "onehot", "bcp")}
    for s in s_grid:
        theta = (star + float(s) * v)[None]
        log_q = student.log_probs(theta, xs)
        l_one, l_bcp = cross_entropy(t_onehot, log_q)[0], cross_entropy(t_bcp, log_q)[0]
        kl = kl_divergence(log_p, log_q)[0]
        kl_m, kl_se = _mean_se(kl)
        predicted = f_star.value + kl_m
        for name, l in (("onehot", l_one), ("bcp", l_bcp)):
            m, m_se = _mean_se(l)
            _, paired_se = _mean_se(l - kl)
            rows.append(dict(panel="a", series=f"{name} risk", kind="measured", x=s, value=m, se=m_se))
            z = abs(m - predicted) / paired_se
            if z >= worst[name][0]:
                worst[name] = (z, dict(s=s, measured=m, se=paired_se, predicted=predicted))
        d, d_se = _mean_se(l_one - l_bcp)
        rows.append(dict(panel="b", series="onehot - bcp", kind="measured", x=s, value=d, se=d_se))
        if abs(d) / d_se >= worst["diff"][0]:
            worst["diff"] = (abs(d) / d_se, dict(s=s, measured=d, se=d_se, predicted=0.0))
        rows.append(dict(panel="a", series="H(Y|X) + E KL", kind="predicted", x=s, value=predicted, se=math.hypot(kl_se, f_star.se)))

    at_star = _mean_se(cross_entropy(t_onehot, student.log_probs(star[None], xs))[0])
    g_one = student.per_sample_grads(star[None], xs, t_onehot)[0]
    g_bcp = student.per_sample_grads(star[None], xs, t_bcp)[0]
    norm_one, norm_bcp = g_one.norm(dim=-1).numpy(), g_bcp.norm(dim=-1).numpy()
    sq_m, sq_se = _mean_se(g_one.pow(2).sum(-1))
    full_bcp = float(student.batch_grad(star[None], xs, t_bcp)[0].norm())
    full_one = float(student.batch_grad(star[None], xs, t_onehot)[0].norm())
    sigma2 = pred.sigma2_closed_form(task, student, T.OneHot(), n_mc=n, seed=SEED)
    edges = tp.log_bins({"onehot": norm_one, "bcp": norm_bcp})
    counts = {}
    for name, norms in (("onehot", norm_one), ("bcp", norm_bcp)):
        centres, counts[name] = tp.histogram_counts(norms, edges)
        rows += [dict(panel="c", series=name, kind="measured", x=c, value=k, se=math.nan) for c, k in zip(centres, counts[name])]
    frame = pd.DataFrame(rows, columns=["panel", "series", "kind", "x", "value", "se"])
    csv = out / f"{FIG_ID}.csv"
    frame.to_csv(csv, index=False)

    conf = f"triangle, linear pinned, float64; line theta* + s v, s in [{s_grid[0]:g}, {s_grid[-1]:g}] ({len(s_grid)} points), n={n:,}"
    claims = []
    for key, text in (("diff", "P1: onehot risk - bcp risk = 0 at every s (worst s shown)"),
                      ("onehot", "P1: onehot risk = H(Y|X) + E KL(p||q) at every s (worst s shown)"),
                      ("bcp", "P1: bcp risk = H(Y|X) + E KL(p||q) at every s (worst s shown)")):
        z, w = worst[key]
        claims.append(dict(claim=text, configuration=f"{conf}; worst s = {w['s']:.3g}, |z| = {z:.2f}",
                           predicted=w["predicted"], measured=w["measured"], measured_se=w["se"],
                           ratio=w["measured"] / w["predicted"] if w["predicted"] else math.nan,
                           verdict="agrees" if z <= Z else "disagrees"))
    claims.append(dict(claim="P1: F(theta*) = H(Y|X) (onehot risk at s = 0)", configuration=f"{conf}; F* by {f_star.method}",
                       predicted=f_star.value, measured=at_star[0], measured_se=at_star[1], ratio=at_star[0] / f_star.value,
                       verdict="agrees" if abs(at_star[0] - f_star.value) <= Z * math.hypot(at_star[1], f_star.se) else "disagrees"))
    claims.append(dict(claim="P2: bcp per-sample gradient at theta* = 0 (max over samples)", configuration=f"{conf}; tolerance {ZERO_TOL:g}",
                       predicted=0.0, measured=float(norm_bcp.max()), measured_se=math.nan, ratio=math.nan,
                       verdict="holds" if norm_bcp.max() <= ZERO_TOL else "fails"))
    claims.append(dict(claim="P2: bcp empirical-risk gradient at theta* = 0 (finite set)",
                       configuration=f"{conf}; onehot labels give ||grad|| = {full_one:.3g} on the same set",
                       predicted=0.0, measured=full_bcp, measured_se=math.nan, ratio=math.nan,
                       verdict="holds" if full_bcp <= ZERO_TOL else "fails"))
    claims.append(dict(claim="onehot per-sample gradient at theta*: E||g||^2 = sigma^2 (E6)",
                       configuration=f"{conf}; mean ||g|| = {norm_one.mean():.3g}",
                       predicted=sigma2.value, measured=sq_m, measured_se=sq_se, ratio=sq_m / sigma2.value,
                       verdict="agrees" if abs(sq_m - sigma2.value) <= Z * math.hypot(sq_se, sigma2.se) else "disagrees"))

    fig, axes = plots.new_figure(3)
    ax = axes[0, 0]
    a = frame[frame.panel == "a"]
    for name, color in (("onehot risk", "C0"), ("bcp risk", "C1")):
        sub = a[a.series == name]
        tp.points_with_errors(ax, sub.x, sub.value, sub.se, label=f"{name} (measured)", color=color,
                              marker="o" if name.startswith("onehot") else "x")
    sub = a[a.series == "H(Y|X) + E KL"]
    tp.prediction_line(ax, sub.x, sub.value, label="H(Y|X) + E KL (Prop. 1)", color="k")
    tp.level(ax, f_star.value, label="F* = H(Y|X)", color="0.5")
    ax.set_xlabel("s (theta = theta* + s v)")
    ax.set_ylabel("risk F (nats)")
    ax.set_title("(a) risks along a line through theta*")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    sub = frame[frame.panel == "b"]
    tp.points_with_errors(ax, sub.x, sub.value, sub.se, label="onehot - bcp (measured)", color="C2")
    tp.level(ax, 0.0, label="0 (Prop. 1)", color="k", style="--")
    ax.set_xlabel("s")
    ax.set_ylabel("risk difference (nats)")
    ax.set_title("(b) onehot risk - bcp risk, same x")
    ax.legend(fontsize=7)
    ax = axes[0, 2]
    tp.count_histogram(ax, edges, counts, xlabel="log10 ||grad l(theta*; x, t)||")
    ax.set_title("(c) per-sample gradients at theta*")
    ax.legend(fontsize=7)
    caption = (f"F2 ({'quick' if quick else 'full'}): triangle task, linear softmax student, pinned gauge, float64; "
               f"n = {n:,} inputs with sampled labels (seed {SEED}); v a random unit direction. Bars: +-2 SE. "
               f"bcp gradient norms at theta*: max {norm_bcp.max():.1e} (rounding); onehot: mean {norm_one.mean():.3g}.")
    png = plots.save(fig, out, FIG_ID, caption)
    return [png, csv, write_claims(out, FIG_ID, claims)]
