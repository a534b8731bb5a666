"""F2, Props. 1 and 2: one risk for every unbiased teacher, and no gradient noise at theta* with bcp.

Triangle task, linear softmax student in the pinned gauge, float64. Every judged number is a claim
record (`bkd_theory.claims`):
- Prop. 1 along the line theta* + s v (v a fixed random unit vector, `direction_seed`): at each s,
  `P1-line` (onehot risk - bcp risk = 0, paired on the same n draws of (x, y)) and `P1-KL` (onehot
  risk - E_x KL(p || q_theta) = F* = H(Y|X), paired SE; F* by quadrature); each point has its own
  seed (`base.point_seed`). The library's `P1` (random theta around theta*) beside them.
- Prop. 2: `P2` (every bcp per-sample gradient at theta* is 0 up to float64 rounding, 1e-12) and
  `P2-empirical` (the bcp empirical-risk gradient on a finite set is 0 too; onehot labels give
  ~sqrt(sigma^2 / n) on the same set).
Panels: (a) risks along the line (from the P1 records' details); (b) onehot - bcp with +-2 SE;
(c) a histogram of log10 ||grad l(theta*; x, t)|| for both targets (display only, its own sample).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from .. import claims
from ..claims import recipes
from ..plots import finish, new_figure
from ..plots import neighborhood as nb
from ..plots import theorems as tp
from ..rng import stream
from .base import FRAME_COLUMNS, Result, figure, point_seed

SEED = 2
BASE = {"task": "triangle", "student": "linear", "gauge": "pinned", "teacher": "onehot"}
COLUMNS = [*FRAME_COLUMNS, "claim"]


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, claim: str = "") -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, claim=claim)


@figure("F2", title="Risk and interpolation", seed=SEED, claims=("P1", "P1-line", "P1-KL", "P2", "P2-empirical"),
        summary="Props. 1-2: onehot and bcp risks coincide along a line through theta*; bcp gradients vanish at theta*.")
class F2:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(s=tuple(np.linspace(-3.0, 3.0, 7)), n=20_000, p1_thetas=8, p1_n=8192, p2_n=10_000, hist_n=20_000)
        return dict(s=tuple(np.linspace(-3.0, 3.0, 25)), n=400_000, p1_thetas=32, p1_n=50_000, p2_n=400_000,
                    hist_n=400_000)

    @staticmethod
    def measure(s: dict) -> Result:
        rows, records = [], []
        for i, sv in enumerate(s["s"]):
            cfg = {**BASE, "seed": point_seed(SEED, i), "direction_seed": SEED, "s": float(sv), "n": s["n"]}
            for kind in ("P1-line", "P1-KL"):
                records.append(claims.make(kind, f"{kind}-s{sv:+.2f}", **cfg).check())
            rows += _line_rows(records[-1], float(sv))
        records.append(claims.make("P1", "P1-random-theta", **BASE, seed=SEED, thetas=s["p1_thetas"], theta_scale=1.0,
                                   n=s["p1_n"]).check())
        records.append(claims.make("P2", "P2-per-sample", **{**BASE, "teacher": "bcp"}, seed=SEED, n=s["p2_n"]).check())
        records.append(claims.make("P2-empirical", "P2-empirical", **{**BASE, "teacher": "bcp"}, seed=SEED,
                                   n=s["p2_n"]).check())
        rows += _histogram(s["hist_n"])
        return Result(pd.DataFrame(rows, columns=COLUMNS), records, notes=_notes(records))

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(3)
        f = result.frame
        a = f[f.panel == "a"]
        ax = axes[0, 0]
        for name, color, marker in (("onehot risk", "C0", "o"), ("bcp risk", "C1", "x")):
            sub = a[a.series == name]
            tp.points_with_errors(ax, sub.x, sub.value, sub.se, label=f"{name} (measured)", color=color, marker=marker)
        sub = a[a.series == "F* + E KL"]
        tp.prediction_line(ax, sub.x, sub.value, label="H(Y|X) + E KL(p || q) (Prop. 1)", color="k")
        tp.level(ax, float(a[a.series == "F*"].value.iloc[0]), label="F* = H(Y|X)", color="0.5")
        nb.labels(ax, "s (theta = theta* + s v)", "risk F (nats)", "(a) risks along a line through theta*")
        ax = axes[0, 1]
        sub = f[f.panel == "b"]
        tp.points_with_errors(ax, sub.x, sub.value, sub.se, label="onehot - bcp (measured, P1-line)", color="C2")
        tp.level(ax, 0.0, label="0 (Prop. 1)", color="k", style="--")
        nb.labels(ax, "s", "risk difference (nats)", "(b) onehot risk - bcp risk, same (x, y)")
        ax = axes[0, 2]
        c = f[f.panel == "c"]
        edges = _edges(c)
        tp.count_histogram(ax, edges, {t: c[c.series == t].value.to_numpy() for t in ("onehot", "bcp")},
                           xlabel="log10 ||grad l(theta*; x, t)||")
        nb.labels(ax, "log10 ||grad l(theta*; x, t)||", "count", "(c) per-sample gradients at theta*")
        bcp = result.record("P2-per-sample").measured.value
        return finish(fig, f"F2: triangle task, linear softmax student (pinned gauge), float64; {len(s['s'])} points "
                           f"s in [{min(s['s']):g}, {max(s['s']):g}], each its own seed and n = {s['n']:,} draws of (x, y); "
                           f"v a fixed random unit direction. Bars +-2 SE (paired). Largest bcp gradient norm at theta*: "
                           f"{bcp:.1e} (float64 rounding; exact zeros drawn at 1e-18).")


def _line_rows(rec, sv: float) -> list[dict]:
    """Panel (a) and (b) rows of one point of the line, read from its P1-KL record's details."""
    d = rec.measured.info
    one, bcp, kl, diff = (d[f"{k} (mean, se)"] for k in ("onehot", "bcp", "KL", "onehot - bcp"))
    f_star = rec.predicted.value
    cid = rec.claim.id
    return [_row("a", "onehot risk", "measured", sv, *one, cid), _row("a", "bcp risk", "measured", sv, *bcp, cid),
            _row("a", "F* + E KL", "predicted", sv, f_star + kl[0], math.hypot(rec.predicted.se, kl[1]), cid),
            _row("a", "F*", "predicted", sv, f_star, rec.predicted.se, cid),
            _row("b", "onehot - bcp", "measured", sv, *diff, cid.replace("P1-KL", "P1-line"))]


def _histogram(n: int) -> list[dict]:
    """Counts of log10 per-sample gradient norms at theta* for onehot and bcp targets on one sample."""
    task, student, _ = recipes.objects({**BASE, "teacher": "bcp"})
    x, y = task.sample(n, stream(SEED, "figure.F2", 0))
    star, xt = student.optimum(task)[None], torch.from_numpy(x)[None]
    targets = {"onehot": np.eye(task.num_classes)[y], "bcp": task.bcp(x)}
    norms = {k: student.per_sample_grads(star, xt, torch.from_numpy(t)[None])[0].norm(dim=-1).numpy()
             for k, t in targets.items()}
    edges = tp.log_bins(norms)
    rows = []
    for name, v in norms.items():
        centres, counts = tp.histogram_counts(v, edges)
        rows += [_row("c", name, "measured", float(c), float(k)) for c, k in zip(centres, counts)]
    return rows


def _edges(c: pd.DataFrame) -> np.ndarray:
    x = np.sort(c.x.unique())
    w = x[1] - x[0]
    return np.r_[x - w / 2, x[-1] + w / 2]


def _notes(records: list) -> list[str]:
    line = [r for r in records if r.claim.kind == "P1-line"]
    worst = max(line, key=lambda r: abs(r.verdict.z))
    emp = next(r for r in records if r.claim.kind == "P2-empirical")
    return [f"Along the line, onehot - bcp risk is within {abs(worst.verdict.z):.1f} SE of 0 at every s "
            f"({sum(r.verdict.verdict == 'agrees' for r in line)}/{len(line)} agree).",
            f"At theta*, the bcp empirical-risk gradient on {emp.measured.info['n']:,} points is "
            f"{emp.measured.value:.1e}; onehot labels give {emp.measured.info['onehot_grad_norm']:.2e} on the same set."]
