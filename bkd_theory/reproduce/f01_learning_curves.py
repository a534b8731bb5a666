"""F1, the authors' synthetic experiment: learning curves, the loss-noise table and the accuracy
table (DESIGN 6 F1).

Configuration (as in the authors' code, `claims.learning.PAPER`): the paper task with standardised
inputs, a 2 x 128 ReLU MLP student, batch 1, lr 5e-4, heavy-ball momentum 0.9, float32, `epochs`
epochs over a training set of n points per seed (epoch shuffling), validation cross-entropy
against the labels of a fixed evaluation set of `eval_n` points (stated in the caption and the
tables). Teachers: onehot (frozen labels), dirichlet:0.5, dirichlet:5 (frozen draws: a teacher's
fixed predictions) and bcp (exact p). Seeds are the loop's chains, paired across teachers.

Every judged number comes from `claims.make(kind, ...).check()` (kinds in `claims.learning`):
- loss-noise ordering onehot > dirichlet:0.5 > dirichlet:5 > bcp (E8: Cov(t | x) = Sigma_y/(1 + alpha)),
  `loss-noise-ratio` with `verdicts.Sign` (holds / violated beyond Z = 4 SE);
- the magnitude of the Dirichlet 0.5 / 5 ratio. E8 scales the parameter covariance S by
  s = 1/(1 + alpha); the std of a loss curve scales as s for its quadratic part and as s^(1/2)
  for its linear part (`claims.learning` docstring). So the measured ~1 : 0.7 : 0.3 (onehot :
  0.5 : 5) is not E8's 1 : 0.67 : 0.17: the validation loss against sampled eval labels carries a
  linear "label term" of size O(eval_n^-1/2). Claims: the label term follows s^(1/2) (ratio 2,
  `E8-loss-noise`, Equal); the excess risk of the realizable linear student with the same
  optimiser follows s (ratio 4, Equal); the validation loss lies between (two Sign claims).
  The investigation table (`F1.investigation.csv`) gives the ratio for each curve of the base runs
  and of the linear student; full mode adds the variants that test the other candidates: no
  momentum (lr 5e-3, the same effective step), fresh Dirichlet draws, online (no training set),
  and a 4x larger eval set.
- end-of-training values (mean over the last `end_window` of the recorded steps, SE across seeds
  combined with the evaluation-sample term: `records.Run.summary` for single values, per-point
  differences for paired ones): val loss(onehot) > val loss(bcp), accuracy(bcp) > accuracy(onehot)
  (Sign), and every accuracy <= the Bayes accuracy (exact orthant integral; Bound).
Loss noise is the std of the curve over the last half of the run, detrended by a least-squares line
(the slow decrease inside the window is not noise; the raw std is in the table too); a ratio of
noises is the ratio of the seed means with the paired delta-method SE.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import claims
from ..claims import learning as L
from ..claims import recipes
from ..plots import band, finish, new_figure
from ..plots import learning as lp
from ..stats import mean_se, trailing_window
from .base import FRAME_COLUMNS, Result, figure

SEED = 1
TEACHERS = ("onehot", "dirichlet:0.5", "dirichlet:5", "bcp")
PAIR = ("dirichlet:0.5", "dirichlet:5")  # the ratio whose magnitude E8 predicts
CURVES = ("val_loss", "excess_risk", "label_term")
COLUMNS = [*FRAME_COLUMNS, "se_seeds", "seed", "claim"]
#: the investigation's variants of the base configuration (full mode): label -> overrides
VARIANTS = {
    "no momentum (lr 5e-3)": {"momentum": 0.0, "gamma": 5e-3},
    "fresh Dirichlet draws": {"noise": "fresh"},
    "online (no training set)": {"regime": "online", "n": None, "sampling": "replacement", "noise": "fresh"},
    "eval set x4": {"eval_mult": 4},
}


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, seed: int = -1,
         claim: str = "", se_seeds: float = math.nan) -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, se_seeds=se_seeds, seed=seed,
                claim=claim)


def base_config(s: dict) -> dict:
    """The paper configuration of the main runs (teacher onehot; the claims swap it)."""
    return {**L.PAPER, "teacher": "onehot", "n": s["n"], "steps": s["n"] * s["epochs"], "chains": s["seeds"],
            "seed": SEED, "eval_every": s["eval_every"], "eval_n": s["eval_n"], "curve": "val_loss", "detrend": True,
            "end_window": s["end_window"]}


def linear_config(s: dict) -> dict:
    """The realizable linear student with the paper's optimiser, online, from theta*."""
    return {**L.LINEAR_ONLINE, "steps": s["linear_steps"], "chains": s["linear_chains"], "seed": SEED,
            "eval_every": s["linear_eval_every"], "eval_n": s["eval_n"], "curve": "excess_risk", "detrend": True}


@figure("F1", title="Learning curves and loss noise", seed=SEED,
        claims=("loss-noise-ratio", "E8-loss-noise", "paired-difference", "accuracy-bayes"),
        summary="Paper-style learning curves (MLP, b=1, lr 5e-4, m=0.9); loss noise vs E8 for the linear and "
                "quadratic parts of the loss; accuracy vs the Bayes accuracy.")
class F1:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(n=3000, epochs=2, seeds=8, eval_every=100, eval_n=1000, end_window=0.1, linear_steps=12000,
                        linear_chains=16, linear_eval_every=100, variants=())
        return dict(n=22500, epochs=2, seeds=6, eval_every=250, eval_n=2500, end_window=0.1, linear_steps=45000,
                    linear_chains=32, linear_eval_every=250, variants=tuple(VARIANTS))

    @staticmethod
    def measure(s: dict) -> Result:
        base, lin = base_config(s), linear_config(s)
        configs = _variant_configs(base, s["variants"])
        # every run of the figure made up front, stacked where they share an update (`recipes.prefetch`)
        recipes.prefetch([{**base, "teacher": t} for t in TEACHERS] + [{**c, "teacher": t} for c in configs.values()
                                                                   for t in PAIR] + [{**lin, "teacher": t} for t in PAIR])
        records = _claims(base, lin)
        rows = _curve_rows(base) + _noise_rows(base, lin, records)
        for t in TEACHERS:
            a = L.end({**base, "teacher": t}, "accuracy")
            rows.append(_row("accuracy", t, "accuracy", L.label_scale(t), a.value, a.se))
        tables = {"noise": _noise_table(base), "accuracy": _accuracy_table(base)}
        inv = _investigation(base, lin, configs)
        tables["investigation"] = inv
        rows += [_row("ratio", r.configuration, r.curve, i, r.ratio, r.se) for i, r in enumerate(inv.itertuples())]
        return Result(pd.DataFrame(rows, columns=COLUMNS), records, tables, notes=_notes(records, inv, base))

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(3, 2, width=4.4, height=3.3)
        f, tabs = result.frame, result.tables
        _draw_curves(axes[0, 0], axes[0, 1], f)
        _draw_noise(axes[0, 2], f)
        _draw_ratios(axes[1, 0], f)
        acc = tabs["accuracy"]
        lp.estimates(axes[1, 1], list(acc["teacher"]), acc["accuracy"], acc["accuracy_se"],
                     reference_value=float(acc["bayes_accuracy"].iloc[0]), reference_label="Bayes accuracy (exact)")
        axes[1, 1].set_xlabel("accuracy on the eval set, end of training")
        axes[1, 1].set_title("(e) accuracy, +-2 SE (seeds + eval sample)", fontsize=9)
        axes[1, 1].legend(fontsize=7)
        nz = tabs["noise"][tabs["noise"]["teacher"] != "bcp"]
        lp.estimates(axes[1, 2], list(nz["teacher"]), nz["ratio_to_bcp"], nz["ratio_to_bcp_se"], offset=-0.15,
                     series="raw", reference_value=1.0, reference_label="= bcp")
        lp.estimates(axes[1, 2], list(nz["teacher"]), nz["ratio_to_bcp_detrended"], nz["ratio_to_bcp_detrended_se"],
                     offset=0.15, fmt="s", series="detrended")
        axes[1, 2].set_xlabel("noise(T) / noise(bcp), val loss")
        axes[1, 2].set_title("(f) loss noise relative to bcp, +-2 SE", fontsize=9)
        axes[1, 2].legend(fontsize=7)
        return finish(fig, f"F1: paper task (standardised), MLP 2x128 ReLU, batch 1, lr 5e-4, momentum 0.9, "
                           f"{s['epochs']} epochs over n={s['n']:,} per seed (shuffled); labels and Dirichlet targets "
                           f"frozen; validation CE on a fixed eval set of {s['eval_n']:,} points every "
                           f"{s['eval_every']} steps; {s['seeds']} seeds. Loss noise: std of the curve over the last "
                           f"half, detrended. Linear student: online from theta*, {s['linear_chains']} chains, "
                           f"{s['linear_steps']:,} steps.")


def _claims(base: dict, lin: dict) -> list:
    """The judged claims (module docstring)."""
    e8 = "E8: Cov(t | x) = Sigma_y/(1 + alpha)"
    out = [claims.check("loss-noise-ratio", f"noise-{a}-over-{b}", base, teacher=a, than=b, reference=1.0, basis=e8)
           for a, b in zip(TEACHERS, TEACHERS[1:])]
    out.append(claims.check("loss-noise-ratio", "noise-ratio-above-linear-law", base, teacher=PAIR[0], than=PAIR[1],
                      reference=2.0, basis="above the linear part's (s_0.5/s_5)^(1/2) = 2: the quadratic part adds"))
    out.append(claims.check("loss-noise-ratio", "noise-ratio-below-quadratic-law", base, teacher=PAIR[1], than=PAIR[0],
                      reference=0.25, basis="inverse ratio above 1/4: below the quadratic part's s_0.5/s_5 = 4, the "
                                            "label term adds"))
    out.append(claims.check("E8-loss-noise", "E8-label-term", base, curve="label_term", teacher=PAIR[0], than=PAIR[1]))
    out.append(claims.check("E8-loss-noise", "E8-linear-student-excess-risk", lin, teacher=PAIR[0], than=PAIR[1]))
    out.append(claims.check("paired-difference", "val-loss-onehot-minus-bcp", base, teacher="onehot", than="bcp",
                      quantity="val_loss", basis="noisier targets, higher end risk (E18)"))
    out.append(claims.check("paired-difference", "accuracy-bcp-minus-onehot", base, teacher="bcp", than="onehot",
                      quantity="accuracy", basis="the bcp student is closer to p"))
    out += [claims.check("accuracy-bayes", f"accuracy-bayes-{t}", base, teacher=t) for t in TEACHERS]
    return out


def _curve_rows(base: dict) -> list[dict]:
    """Val-loss curves: mean over seeds; `se` = SE across seeds combined with the evaluation-sample
    term at that step, `se_seeds` = across seeds only (the eval error is common to every curve);
    and seed 0's last half."""
    rows = []
    for t in TEACHERS:
        r = L.run({**base, "teacher": t})
        k, m, se, se_s = recipes.chain_curve(r, "val_loss")
        rows += [_row("curves", t, "val_loss", int(x), float(a), float(b), se_seeds=float(c))
                 for x, a, b, c in zip(k, m, se, se_s)]
        late = trailing_window(k, None)
        rows += [_row("trace", t, "val_loss", int(x), float(a), seed=0)
                 for x, a in zip(k[late], r.values("val_loss")[1][late, 0])]
    rows.append(_row("curves", "bcp", "F* (eval set)", 0, L.bayes_val_loss(base)))
    return rows


def _noise_rows(base: dict, lin: dict, records: list) -> list[dict]:
    """Loss noise (detrended) vs s = 1/(1 + alpha) per curve, for the MLP and the linear student."""
    rows = []
    for c in CURVES:
        for t in TEACHERS:
            m, se, _ = mean_se(L.noise({**base, "curve": c}, t))
            rows.append(_row("noise", t, c, L.label_scale(t), m, se))
    rec = next(r for r in records if r.claim.id == "E8-linear-student-excess-risk")
    for t in PAIR:
        m, se, _ = mean_se(L.noise(lin, t))
        rows.append(_row("noise", t, "linear student excess_risk", L.label_scale(t), m, se, claim=rec.claim.id))
    return rows


def _noise_table(base: dict) -> pd.DataFrame:
    """Per teacher: loss noise (raw, detrended) of each curve with SE, ratios to bcp and to onehot."""
    rows = []
    for t in TEACHERS:
        row: dict = {"teacher": t, "s": L.label_scale(t), "eval_n": base["eval_n"], "seeds": base["chains"]}
        for c in CURVES:
            for det, suffix in ((False, ""), (True, "_detrended")):
                cfg = {**base, "curve": c, "detrend": det}
                name = "noise" if c == "val_loss" else f"noise_{c}"
                row[name + suffix], row[f"{name}{suffix}_se"], _ = mean_se(L.noise(cfg, t))
                if c == "val_loss":
                    for ref in ("bcp", "onehot"):
                        r = L.noise_ratio({**cfg, "teacher": t, "than": ref})
                        row[f"ratio_to_{ref}{suffix}"], row[f"ratio_to_{ref}{suffix}_se"] = r.value, r.se
        rows.append(row)
    return pd.DataFrame(rows)


def _accuracy_table(base: dict) -> pd.DataFrame:
    """Per teacher: end accuracy, val loss and excess risk with SE (seeds + eval sample), beside the
    exact Bayes accuracy and F* on the eval set."""
    bayes, floor = L.bayes_accuracy(base), L.bayes_val_loss(base)
    rows = []
    for t in TEACHERS:
        row: dict = {"teacher": t, "eval_n": base["eval_n"], "seeds": base["chains"], "end_window": base["end_window"],
                     "bayes_accuracy": bayes.value, "bayes_accuracy_se": bayes.se, "bayes_val_loss": floor}
        for q in ("accuracy", "val_loss", "excess_risk"):
            e = L.end({**base, "teacher": t}, q)
            row[q], row[f"{q}_se"], row[f"{q}_se_eval"] = e.value, e.se, e.info["se_eval"]
        row["accuracy_gap_to_bayes"] = bayes.value - row["accuracy"]
        rows.append(row)
    return pd.DataFrame(rows)


def _variant_configs(base: dict, variants: tuple[str, ...]) -> dict[str, dict]:
    """The configurations of the investigation: label -> the base with the overrides of `VARIANTS`."""
    configs = {}
    for v in variants:
        over = dict(VARIANTS[v])
        eval_n = base["eval_n"] * over.pop("eval_mult", 1)
        configs[v] = {**base, **over, "eval_n": eval_n}
    return configs


def _investigation(base: dict, lin: dict, variants: dict[str, dict]) -> pd.DataFrame:
    """noise(dirichlet:0.5) / noise(dirichlet:5) of each curve: the base runs, the linear student, and
    (full mode) the variants (`_variant_configs`); beside the two laws (s^(1/2): 2, s: 4)."""
    rows = []
    for label, cfg in {"base (F1 runs)": base, **variants}.items():
        for c in CURVES:
            r = L.noise_ratio({**cfg, "curve": c, "teacher": PAIR[0], "than": PAIR[1]})
            rows.append(dict(configuration=label, student="mlp", curve=c, ratio=r.value, se=r.se, seeds=r.info["seeds"],
                             eval_n=cfg["eval_n"], steps=cfg["steps"]))
    for c in CURVES:
        r = L.noise_ratio({**lin, "curve": c, "teacher": PAIR[0], "than": PAIR[1]})
        rows.append(dict(configuration="linear student (online, theta*)", student="linear", curve=c, ratio=r.value,
                         se=r.se, seeds=r.info["seeds"], eval_n=lin["eval_n"], steps=lin["steps"]))
    out = pd.DataFrame(rows)
    out["law_linear_part"], out["law_quadratic_part"] = 2.0, 4.0
    return out


def _notes(records: list, inv: pd.DataFrame, base: dict) -> list[str]:
    by = {r.claim.id: r for r in records}
    fmt = lambda r: f"{r.measured.value:.3g} +- {r.measured.se:.2g}"  # noqa: E731
    kl = inv[(inv["configuration"] == "base (F1 runs)") & (inv["curve"] == "excess_risk")].iloc[0]
    return [f"Loss noise dirichlet:0.5 / dirichlet:5 (eval set of {base['eval_n']:,}): validation loss "
            f"{fmt(by['noise-ratio-above-linear-law'])}, between E8's laws for the linear part (2) and the quadratic "
            f"part (4); its label term {fmt(by['E8-label-term'])} (predicted 2, "
            f"{by['E8-label-term'].verdict.verdict}); "
            f"the MLP's excess-risk curve {kl.ratio:.3g} +- {kl.se:.2g}; the realizable linear student's excess "
            f"risk {fmt(by['E8-linear-student-excess-risk'])} (predicted 4, "
            f"{by['E8-linear-student-excess-risk'].verdict.verdict})."]


def _draw_curves(ax_curve, ax_trace, f: pd.DataFrame) -> None:
    cur = f[f["panel"] == "curves"]
    floor = float(cur[cur["kind"] == "F* (eval set)"]["value"].iloc[0])
    for t in TEACHERS:
        c = cur[(cur["series"] == t) & (cur["kind"] == "val_loss")]
        band(ax_curve, c["x"], c["value"], c["se_seeds"], label=t, color=lp.color(t))
    lp.reference(ax_curve, floor, label="F* on the eval set (q = p)")
    last = cur[(cur["kind"] == "val_loss") & (cur["x"] == cur["x"].max())]
    shared = float(np.sqrt(np.mean(last["se"] ** 2 - last["se_seeds"] ** 2)))
    ax_curve.errorbar(last["x"].iloc[0] * 1.02, floor, yerr=2 * shared, color="0.3", capsize=3,
                      label="+-2 SE of the eval sample (shared)")
    late = cur[(cur["kind"] == "val_loss") & (cur["x"] >= cur["x"].max() / 4)]
    top = float(late.groupby("series")["value"].max().max())
    ax_curve.set_ylim(floor - 0.1 * (top - floor), top + 0.05 * (top - floor))
    ax_curve.set_xlabel("SGD step")
    ax_curve.set_ylabel("validation cross-entropy (nats)")
    ax_curve.set_title("(a) learning curves, +-2 SE across seeds", fontsize=9)
    ax_curve.legend(fontsize=6)
    tr = f[f["panel"] == "trace"]
    for t in TEACHERS:
        c = tr[tr["series"] == t]
        ax_trace.plot(c["x"], c["value"], lw=0.9, color=lp.color(t), label=t)
    lp.reference(ax_trace, floor, label="F*")
    ax_trace.set_xlabel("SGD step")
    ax_trace.set_ylabel("validation cross-entropy (nats)")
    ax_trace.set_title("(b) last half, seed 0 (the noise window)", fontsize=9)


def _draw_noise(ax, f: pd.DataFrame) -> None:
    nz = f[f["panel"] == "noise"]
    grid = np.linspace(0.0, 1.0, 101)
    for c, marker in zip(CURVES, "os^"):
        sub = nz[nz["kind"] == c].sort_values("x")
        ax.errorbar(sub["x"], sub["value"], yerr=2 * sub["se"], fmt=marker, ms=4, capsize=2, label=c)
        top = float(sub[sub["series"] == "onehot"]["value"].iloc[0])
        ax.plot(grid, top * grid, color="0.6", lw=0.7, ls="--")
        ax.plot(grid, top * np.sqrt(grid), color="0.6", lw=0.7, ls=":")
    ax.plot([], [], color="0.6", ls="--", label="~ s (quadratic part)")
    ax.plot([], [], color="0.6", ls=":", label="~ s^1/2 (linear part)")
    ax.set_xlabel("s = 1/(1 + alpha) (onehot 1, bcp 0)")
    ax.set_ylabel("loss noise, detrended std (nats)")
    ax.set_title("(c) loss noise vs target noise, MLP, +-2 SE", fontsize=9)
    ax.legend(fontsize=6)


def _draw_ratios(ax, f: pd.DataFrame) -> None:
    r = f[f["panel"] == "ratio"].reset_index(drop=True)
    labels = [f"{a} | {b}" for a, b in zip(r["series"], r["kind"])]
    for i, row in r.iterrows():
        ax.errorbar(row["value"], i, xerr=2 * row["se"], fmt="o", ms=4, capsize=2,
                    color={"val_loss": "C0", "excess_risk": "C1", "label_term": "C2"}[row["kind"]])
    ax.set_yticks(range(len(r)), labels, fontsize=5.5)
    ax.invert_yaxis()
    ax.axvline(2.0, color="0.5", ls=":", lw=1.0, label="linear part: 2")
    ax.axvline(4.0, color="0.5", ls="--", lw=1.0, label="quadratic part: 4")
    ax.set_xlabel("noise(dirichlet:0.5) / noise(dirichlet:5)")
    ax.set_title("(d) the Dirichlet ratio by configuration, +-2 SE", fontsize=9)
    ax.legend(fontsize=6)
