"""F8, generalisation: the excess risk and accuracy of the empirical minimiser vs n and vs teacher
noise (DESIGN 2.4, 2.5, 2.8; E10, E18).

Triangle task, linear softmax student in the pinned gauge, float64, frozen targets (one draw per
training point). Every point is its own claim with its own seed (`base.point_seed`): `chains`
independent replicas, each with its own n inputs and frozen targets, trained to the empirical
minimiser (`claims.recipes.finite_n`: Newton steps from theta*, max gradient norm <= 1e-7), its
excess risk F(theta_n) - F* with exact E_x on the quadrature points, SE across replicas.

Claims: E18 tr(H^-1 C_T)/(2n) at every n and noise level (library kind "E18"); Prop. 2 at finite n
for bcp targets (`P2-finite`: theta* is the empirical minimiser, excess risk 0); at E10's critical
noise nu_c (equal sigma^2) the additive / onehot excess-risk ratio is E18's (`E18-ratio`, not 1),
and the nu at which frozen additive noise generalises like onehot labels is E18's (`E18-crossover`);
the accuracy lost against the Bayes classifier (`accuracy-loss`, exact over the label given x, on a
fresh evaluation sample whose error is included) is a finding.
"""
from __future__ import annotations

import math

import pandas as pd

from .. import claims
from ..claims import recipes
from ..plots import finish, new_figure
from ..plots import neighborhood as nb
from ..plots.theorems import level
from ..threads import single_thread
from .base import FRAME_COLUMNS, Result, figure, point_seed

SEED = 8
N_TEACHERS = ("onehot", "dirichlet:1")
COLUMNS = [*FRAME_COLUMNS, "claim", "n", "grad_norm"]
KINDS = ("E18", "P2-finite", "E18-ratio", "E18-crossover", "accuracy-loss")


def _row(panel: str, series: str, kind: str, x: float, value: float, se: float = math.nan, claim: str = "",
         n: int | None = None, grad: float | None = None) -> dict:
    return dict(panel=panel, series=series, kind=kind, x=x, value=value, se=se, claim=claim, n=n, grad_norm=grad)


@figure("F8", title="Generalisation", seed=SEED, claims=KINDS,
        summary="Excess risk of the empirical minimiser vs n and teacher noise (E18), nu_c (E10) vs the E18 "
                "crossover, accuracy lost to frozen noise.")
class F8:
    @staticmethod
    def settings(quick: bool) -> dict:
        if quick:
            return dict(ns=(1000, 4000), noise_n=1000, alphas=(3.0,), nu_fracs=(0.25, 1.0), chains=32,
                        accuracy_eval=2**14, accuracy=("onehot", "additive"))
        return dict(ns=(1000, 3000, 10_000), noise_n=3000, alphas=(0.3, 1.0, 3.0, 10.0), nu_fracs=(0.25, 0.5, 1.0, 2.0),
                    chains=128, accuracy_eval=2**16, accuracy=("onehot", "dirichlet", "additive"))

    @staticmethod
    def measure(s: dict) -> Result:
        with single_thread():
            return _measure(s)

    @staticmethod
    def draw(result: Result, s: dict):
        fig, axes = new_figure(2, 2)
        f = result.frame
        lv = {r.series: (r.value, r.se) for r in f[f.panel == "levels"].itertuples()}
        ax = axes[0, 0]
        for i, t in enumerate(N_TEACHERS):
            sub = f[(f.panel == "n") & (f.series == t)]
            m, e = sub[sub.kind == "measured"], sub[sub.kind == "E18"]
            nb.measured_points(ax, m.x, m.value, m.se, label=f"{t} measured", color=f"C{i}")
            nb.prediction(ax, e.x, e.value, label=f"E18 {t}", color=f"C{i}", marker="x")
        nb.loglog(ax, "training-set size n", "excess risk F(theta_n) - F* (nats)", "(a) excess risk vs n")
        for ax, name, xlabel, tag in ((axes[0, 1], "additive", "frozen additive noise nu", "b"),
                                      (axes[1, 0], "dirichlet", "Dirichlet alpha", "c")):
            m, e = f[(f.panel == name) & (f.kind == "measured")], f[(f.panel == name) & (f.kind == "E18")]
            nb.measured_points(ax, m.x, m.value, m.se, label=f"{name} measured", color="C2" if name == "additive" else "C1")
            nb.prediction(ax, e.x, e.value, label="E18", color="k", marker="x")
            if "onehot measured" in lv:
                level(ax, *lv["onehot measured"], label="onehot measured (+-2 SE)", color="C0")
            level(ax, lv["onehot E18"][0], label="onehot E18", color="C0", style="--")
            if name == "additive":
                nb.thresholds(ax, {k: lv[k] for k in ("nu_c (E10: equal sigma^2)", "nu* (E18 crossover, predicted)",
                                                      "nu* (crossover, measured)") if k in lv})
            nb.loglog(ax, xlabel, "excess risk (nats)", f"({tag}) {name} targets, n={s['noise_n']}", fontsize=5.5)
        _draw_accuracy(axes[1, 1], f, s)
        return finish(fig, f"F8: triangle task, linear softmax student (pinned gauge), float64, frozen targets; each point "
                           f"{s['chains']} replicas (own training set and targets, own seed) trained to the empirical "
                           f"minimiser (Newton, max |grad| <= 1e-7); excess risk exact in E_x (quadrature). Accuracy loss: "
                           f"exact over y | x on {s['accuracy_eval']} fresh inputs (error included). Bars +-2 SE. "
                           f"E18 = tr(H^-1 C)/(2n).")


def _measure(s: dict) -> Result:
    """The claims and the frame of `F8.measure`."""
    rows: list[dict] = []
    seeds = iter(point_seed(SEED, i) for i in range(10_000))
    cfg = lambda teacher, n: _config(teacher, n, next(seeds), s)  # noqa: E731
    records, ref = [], None
    for teacher in N_TEACHERS:
        for n in s["ns"]:
            c = cfg(teacher, n)
            records.append(_e18(c, "n", teacher, n, rows))
            ref = c if (teacher, n) == ("onehot", s["noise_n"]) else ref
    n0 = s["noise_n"]
    ref = ref or cfg("onehot", n0)
    nu_c = recipes.theory(ref).critical_noise
    for a in s["alphas"]:
        records.append(_e18(cfg(f"dirichlet:{a:g}", n0), "dirichlet", f"dirichlet:{a:g}", a, rows))
    nus = [float(f"{f * nu_c.value:.4g}") for f in s["nu_fracs"]]
    add = [cfg(f"additive:{nu:g}", n0) for nu in nus]
    for c, nu in zip(add, nus):
        records.append(_e18(c, "additive", c["teacher"], nu, rows))
    records.append(claims.make("P2-finite", f"P2-finite-bcp-n{n0}", **{**cfg("bcp", n0), "chains": 8}).check())
    pair = {"reference": "onehot", "reference_seed": ref["seed"]}
    at = add[s["nu_fracs"].index(1.0)] if 1.0 in s["nu_fracs"] else add[-1]
    records.append(claims.make("E18-ratio", f"E18-ratio-{at['teacher']}-onehot", **at, **pair).check())
    cross = {**{k: v for k, v in ref.items() if k != "seed"}, **pair, "teacher": "additive:nu", "nus": nus,
             "seeds": [c["seed"] for c in add]}
    records.append(claims.make("E18-crossover", "E18-crossover-additive-onehot", **cross).check())
    picks = {"onehot": ref, "dirichlet": next((r.claim.config for r in records if r.claim.kind == "E18"
                                               and r.claim.config["teacher"].startswith("dirichlet")
                                               and r.claim.config["n"] == n0), None), "additive": add[0]}
    for name in s["accuracy"]:
        c = {**picks[name], "accuracy_eval": s["accuracy_eval"]}
        records.append(claims.make("accuracy-loss", f"accuracy-loss-{c['teacher']}-n{n0}", **c).check())
    rows += _level_rows(records, nu_c, ref)
    return Result(pd.DataFrame(rows, columns=COLUMNS), records, notes=_notes(records, nu_c.value))


def _config(teacher: str, n: int, seed: int, s: dict) -> dict:
    """One finite-n point: the training recipe's settings. Newton steps: the fixed-H^-1 iteration of
    `recipes.finite_n` contracts by ~0.87 per step at n = 1000 with additive targets (their sum
    scales each sample's Hessian), faster at larger n; the same count for every teacher at one n, so
    that the ratio claims read the E18 points' memoised runs."""
    steps = 150 if n < 2000 else 80 if n < 5000 else 40
    return {"task": "triangle", "student": "linear", "gauge": "pinned", "teacher": teacher, "n": int(n),
            "chains": s["chains"], "newton_steps": steps, "grad_tol": 1e-7, "seed": int(seed)}


def _e18(cfg: dict, panel: str, series: str, x: float, rows: list[dict]):
    rec = claims.make("E18", f"E18-{panel}-{cfg['teacher']}-n{cfg['n']}", **cfg).check()
    if rec.measured is not None:
        rows.append(_row(panel, series, "measured", x, rec.measured.value, rec.measured.se, rec.claim.id, cfg["n"],
                         rec.measured.info["max_grad_norm"]))
    e = recipes.prediction(cfg, "finite_n_excess_risk")
    rows.append(_row(panel, series, "E18", x, e.value, e.se, rec.claim.id, cfg["n"]))
    return rec


def _level_rows(records: list, nu_c, ref: dict) -> list[dict]:
    rec = {r.claim.id: r for r in records}
    out = {"nu_c (E10: equal sigma^2)": (nu_c.value, nu_c.se)}
    r = next((r for r in records if r.claim.kind == "E18" and r.claim.config == ref), None)
    if r is not None and r.measured is not None:
        out["onehot measured"] = (r.measured.value, r.measured.se)
    e = recipes.prediction(ref, "finite_n_excess_risk")
    out["onehot E18"] = (e.value, e.se)
    c = rec["E18-crossover-additive-onehot"]
    if c.measured is not None:
        out["nu* (E18 crossover, predicted)"] = (c.predicted.value, c.predicted.se)
        out["nu* (crossover, measured)"] = (c.measured.value, c.measured.se)
    rows = [_row("levels", k, "level", math.nan, v, se, n=ref["n"]) for k, (v, se) in out.items()]
    for r in records:
        if r.claim.kind == "accuracy-loss" and r.measured is not None:
            e18 = recipes.prediction(r.claim.config, "finite_n_excess_risk").value
            rows.append(_row("accuracy", r.claim.config["teacher"], "measured", e18, r.measured.value, r.measured.se,
                             r.claim.id, r.claim.config["n"]))
            rows.append(_row("accuracy", r.claim.config["teacher"], "student accuracy", e18,
                             r.measured.info["student_accuracy"], r.measured.se, r.claim.id, r.claim.config["n"]))
    return rows


def _draw_accuracy(ax, f: pd.DataFrame, s: dict) -> None:
    m = f[(f.panel == "accuracy") & (f.kind == "measured")]
    for i, row in enumerate(m.itertuples()):
        nb.measured_points(ax, [row.x], [row.value], [row.se], label=row.series, color=f"C{i}", marker="osD^v"[i % 5])
    ax.axhline(0.0, color="0.4", lw=0.8, label="bcp (theta* exactly: no loss)")
    ax.set_xscale("log")
    nb.labels(ax, "the targets' E18 excess risk (nats)", "accuracy(Bayes) - accuracy(student)",
              f"(d) accuracy lost to frozen noise, n={s['noise_n']}", fontsize=6)


def _notes(records: list, nu_c: float) -> list[str]:
    rec = {r.claim.kind: r for r in records}
    out = []
    e18 = [r for r in records if r.claim.kind == "E18"]
    out.append(f"E18: {sum(r.verdict.verdict == 'agrees' for r in e18)}/{len(e18)} points agree.")
    c = rec["E18-crossover"]
    if c.measured is not None:
        out.append(f"Frozen additive noise generalises like onehot labels at nu = {c.measured.value:.3g} +- "
                   f"{c.measured.se:.2g} "
                   f"(E18: {c.predicted.value:.3g}, {c.verdict.verdict}), below E10's nu_c = {nu_c:.3g} where sigma^2 is "
                   f"equal: E18 weighs the noise by H^-1.")
    a = [r for r in records if r.claim.kind == "accuracy-loss" and r.measured is not None]
    if a:
        out.append("Accuracy lost against the Bayes classifier: " + "; ".join(
            f"{r.claim.config['teacher']} {r.measured.value:.2e} +- {r.measured.se:.1e}" for r in a) + ".")
    return out
