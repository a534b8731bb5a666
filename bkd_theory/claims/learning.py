"""Claim kinds shown by F1 and F9: the paper setting (loss noise, accuracy, trained teachers).

The paper's student (`PAPER_STUDENT`): a 2 x 128 ReLU MLP on the paper task with standardised
inputs, batch 1, lr 5e-4, heavy-ball momentum 0.9, random initialisation, float32 (as the authors'
code). Runs are `recipes.run` with the instruments val_loss, excess_risk and calibration, in the
configuration's own dtype. A teacher spec "trained:<kind>" is a trained teacher
(`recipes.trained_teacher`: out of sample on its own labelled sample of `teacher_n` points, or with
`fit_mode` in-sample / cross-fitted on the chains' own training sets); its quality against the true
p is in `claims.protocol`, the student predicted from it in `claims.transfer` (E23).

Seeds are the loop's independent chains. Chain r of two runs with the same seed has the same
training inputs, labels, initialisation and order (and, for the same law, the same target
draws), so per-seed ratios and differences between teachers are paired.

Loss noise (`noise`): per chain, the std over time of a recorded curve over the last half of the
run (raw, or detrended by a least-squares line with `detrend`). Curves: `val_loss` (cross-entropy
against the labels of the fixed evaluation set, the paper's curve), `excess_risk` (KL(p || q) on
the same inputs) and their difference `label_term` = (1/m) sum_i (p_i - e_{y_i})^T log q(x_i) -
mean_i H(p_i), the part the sampled eval labels add. A ratio of noises is the ratio of the seed means with the
paired delta-method SE (`ratio_of_means`). The eval set is fixed and shared by both sides of a
ratio; the noise is that of this eval set (its size is in the configuration), and to leading order
a ratio does not depend on which eval set it is (each part scales with s alone, below), so no
evaluation-sample term is added to a ratio's SE.

What E8 predicts for the std of a loss curve (`E8-loss-noise`). Near the window mean theta^,
L(theta^ + d) - L(theta^) = g^T d + d^T H_L d / 2 + O(d^3), g = grad L(theta^). Linearised SGD
(E17) gives Cov d = S with H S + S H = gamma C_T / b, and an unbiased teacher with Cov(t | x) =
s Sigma_y has C_T = s C_onehot (E5, E8: s = 1/(1 + alpha); onehot 1, bcp 0), so S = s S_onehot
and, for Gaussian d, Var_t L = s g^T S_1 g + s^2 tr((H_L S_1)^2) / 2: the std of the linear part
scales as s^(1/2), that of the quadratic part as s. E8's 1/(1 + alpha) is the law of S and of
the quadratic part only. The excess risk of a realizable student has g = 0 at theta* (each
per-point KL has zero gradient where q = p): power 1. The label term is linear in d to leading
order (gradient and curvature both O(m^-1/2)): power 1/2. The validation loss is their sum, so
its ratio lies between the two laws and moves toward the excess risk's as m grows. A student that
is not at q = p (the MLP) has g != 0 for the excess risk too, so its excess-risk ratio lies below
the quadratic law. The linearised
dynamics do not depend on s, so the autocorrelations, hence the within-window bias of the std, are
the same for every teacher; from theta* the law of d_k scales as s^(1/2) at every k, so the ratio
needs no stationarity.

End values (`end`): each chain's mean over the last `end_window` share of the recorded steps.
Single values take `records.Run.summary(end_window)`: SE across chains combined with the
evaluation-sample term. Paired differences (`paired`) take the per-seed differences (SE across
seeds) combined with the evaluation-sample term of the per-point differences (the same eval set:
same seed and eval_n). They are end-of-training values, not stationary ones: `stationary` is
None, the drift is in `info`.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .. import rng as rng_mod
from ..stats import mean_se, ratio_of_means, trailing_window, window_std
from ..verdicts import Bound, Equal, Finding, Outcome, Sign
from . import recipes
from .base import register_claim

#: the paper's student and optimiser (DESIGN 6 F1; the authors' code)
PAPER_STUDENT = {"task": "paper", "standardize": True, "student": "mlp", "gamma": 5e-4, "momentum": 0.9, "batch": 1,
                 "init": "random", "dtype": "float32", "instruments": ("val_loss", "excess_risk", "calibration")}
#: a finite training set with epoch shuffling and frozen targets (labels are frozen draws)
PAPER = {**PAPER_STUDENT, "regime": "finite", "sampling": "shuffle", "noise": "frozen"}
#: the trained teachers of F9 (DESIGN 2.2), by kind: teacher spec "trained:<kind>"
TRAINED = recipes.TRAINED
BAYESIAN = ("ensemble", "mc_dropout", "laplace")
#: the paper's statements (Bayesian vs deterministic teachers, CIFAR-100)
PAPER_NOISE_REDUCTION = 0.30  # "up to 30 % less noise"
PAPER_ACCURACY_GAIN = 0.0427  # "+4.27 %", read as percentage points of accuracy
#: the power of s = 1/(1 + alpha) in the std of each curve (module docstring)
NOISE_POWER = {"excess_risk": 1.0, "label_term": 0.5}


# ------------------------------------------------------------------ runs and trained teachers
fitted, run, run_config = recipes.fitted, recipes.run, recipes.run_config  # the shared recipes


def with_teacher(cfg: Mapping[str, Any], teacher: str) -> dict[str, Any]:
    """`cfg` with another teacher (the other side of a paired claim)."""
    return {**cfg, "teacher": teacher}


# ------------------------------------------------------------------ loss noise
def curve(r: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps `[T]`, values `[T, R]`) of a recorded curve or of `label_term` = val_loss - excess_risk (nats)."""
    if name == "label_term":
        steps, val = r.values("val_loss")
        return steps, val - r.values("excess_risk")[1]
    return r.values(name)


def noise(cfg: Mapping[str, Any], teacher: str | None = None) -> np.ndarray:
    """Per-chain loss noise `[R]` (nats) of `cfg["curve"]` for `teacher` (default `cfg["teacher"]`):
    the std over the last half of the run, raw or detrended (`cfg["detrend"]`)."""
    r = run(cfg if teacher is None else with_teacher(cfg, teacher))
    steps, values = curve(r, cfg.get("curve", "val_loss"))
    mask = trailing_window(np.asarray(steps), cfg.get("noise_window"))
    return window_std(values[mask], detrend=bool(cfg.get("detrend", False)))


def noise_ratio(cfg: Mapping[str, Any]) -> Outcome:
    """noise(teacher) / noise(than): the ratio of the mean per-seed noises, SE by the paired delta
    method (`ratio_of_means`)."""
    a, b = noise(cfg), noise(cfg, cfg["than"])
    m, se, n = ratio_of_means(a, b)
    return Outcome(m, se, info={"seeds": n, "noise": float(np.mean(a)), "noise_than": float(np.mean(b)),
                                "curve": cfg.get("curve", "val_loss"), "detrend": bool(cfg.get("detrend", False)),
                                "eval_n": int(cfg["eval_n"]), "estimator": "ratio of means, paired delta-method SE"})


def noise_reduction(cfg: Mapping[str, Any]) -> Outcome:
    """1 - noise(teacher) / noise(than) (`noise_ratio`)."""
    r = noise_ratio(cfg)
    return Outcome(1.0 - r.value, r.se, info=dict(r.info))


def label_scale(teacher: str) -> float:
    """s with Cov(t | x) = s (diag p - p p^T) (E6, E8: onehot 1, dirichlet:alpha 1/(1 + alpha), bcp 0);
    ValueError for a law of another form."""
    from ..teachers import parse_teacher

    form = parse_teacher(teacher)._cov_form()
    if form is None or set(form.coef) - {"label"}:
        raise ValueError(f"teacher {teacher!r}: the E8 scaling needs Cov(t | x) = s (diag p - p p^T), got {form}")
    return float(form.coef.get("label", 0.0))


def _e8_predict(cfg: Mapping[str, Any]) -> Outcome:
    """(s_teacher / s_than)^power, power by the curve (module docstring); exact."""
    name = cfg.get("curve", "val_loss")
    if name not in NOISE_POWER:
        raise ValueError(f"curve {name!r} mixes a linear and a quadratic part: no single power "
                         f"(use {sorted(NOISE_POWER)})")
    if name == "excess_risk":
        task, student, _ = recipes.objects(cfg)
        try:
            student.optimum(task)
        except ValueError:
            raise ValueError(f"the quadratic law of the excess-risk curve needs a realizable student, not "
                             f"{cfg['student']!r} on {cfg['task']!r}") from None
    power = NOISE_POWER[name]
    s_a, s_b = label_scale(cfg["teacher"]), label_scale(cfg["than"])
    return Outcome((s_a / s_b) ** power, 0.0, info={"power": power, "s": [s_a, s_b], "method": "E8 + Lyapunov (E17)"})


def _reference(cfg: Mapping[str, Any]) -> Outcome:
    return Outcome(float(cfg.get("reference", 1.0)), 0.0, info={"basis": cfg.get("basis", "")})


# ------------------------------------------------------------------ end-of-training values
def end(cfg: Mapping[str, Any], quantity: str | None = None) -> Outcome:
    """`quantity` (default `cfg["quantity"]`) at the end of training: `Run.summary(end_window)`'s value
    and its SE (chains + evaluation sample); `stationary` None (an end value, not a stationary one)."""
    q = quantity or cfg["quantity"]
    e = run(cfg).summary(float(cfg.get("end_window", 0.1)))["quantities"][q]
    info = {k: e[k] for k in ("se_chains", "se_eval", "eval_error", "drift", "drift_se", "window", "chains")}
    return Outcome(float(e["value"]), float(e["se"]), info={**info, "stationary_value": e["stationary"]})


def _window_values(cfg: Mapping[str, Any], quantity: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-chain means `[R]`, per-point means over the active chains `[N]`) over the end window."""
    r = run(cfg)
    steps, values = r.values(quantity)
    steps = np.asarray(steps)
    mask = trailing_window(steps, float(cfg.get("end_window", 0.1)))
    point_steps, points = r.points[quantity]
    return values[mask].mean(axis=0), points[np.isin(np.asarray(point_steps), steps[mask])].mean(axis=0)


def paired(cfg: Mapping[str, Any]) -> Outcome:
    """End value of `quantity` for `teacher` minus that for `than`: per-seed differences (SE across
    seeds) combined with the evaluation-sample term of the per-point differences."""
    q = cfg["quantity"]
    a, pa = _window_values(cfg, q)
    b, pb = _window_values(with_teacher(cfg, cfg["than"]), q)
    m, se_c, n = mean_se(a - b)
    d = pa - pb
    se_e = mean_se(d)[1]
    return Outcome(m, math.hypot(se_c, se_e), info={"se_chains": se_c, "se_eval": se_e, "seeds": n, "eval_n": len(d)})


def bayes_accuracy(cfg: Mapping[str, Any]) -> Outcome:
    """The task's Bayes accuracy E_x max_k p_k(x) (`Task.bayes_accuracy`: an orthant integral on
    Gaussian mixtures with a shared covariance), with its integration error as SE."""
    task, _, _ = recipes.objects({**cfg, "student": "linear", "teacher": "bcp"})
    e = task.bayes_accuracy()
    return Outcome(e.value, e.se, info={"method": e.method})


def _zero(cfg: Mapping[str, Any]) -> Outcome:
    return Outcome(0.0, 0.0)


def _paper(value: float, text: str) -> Any:
    return lambda cfg: Outcome(value, 0.0, info={"paper": text})


# ------------------------------------------------------------------ the kinds and their defaults
#: F1's quick paper configuration (the defaults of `bkd check`)
F1_QUICK = {**PAPER, "teacher": "onehot", "n": 3000, "steps": 6000, "chains": 4, "seed": 1, "eval_every": 50,
            "eval_n": 1000}
#: the realizable linear student with the paper's optimiser, online, from theta* (E8-loss-noise's quadratic law)
LINEAR_ONLINE = {**PAPER_STUDENT, "student": "linear", "gauge": "pinned", "init": "optimum", "dtype": "float64",
                 "regime": "online", "n": None, "sampling": "replacement", "noise": "fresh", "teacher": "dirichlet:0.5",
                 "steps": 32000, "chains": 48, "seed": 1, "eval_every": 100, "eval_n": 1000}
#: a cheap realizable online run on the triangle task; both E8-loss-noise defaults share its run pair
TRIANGLE_ONLINE = {"task": "triangle", "student": "linear", "gauge": "pinned", "init": "optimum", "dtype": "float64",
                   "regime": "online", "gamma": 0.05, "momentum": 0.0, "batch": 1, "steps": 16000, "chains": 64,
                   "seed": 1, "eval_every": 50, "eval_n": 1000, "instruments": ("val_loss", "excess_risk"),
                   "teacher": "dirichlet:0.5", "than": "dirichlet:5"}
#: F9's quick trained teachers and students
F9_QUICK = {**F1_QUICK, "n": 2000, "steps": 4000, "chains": 3, "seed": 9, "teacher_n": 1000, "teacher_epochs": 20,
            "members": 3, "passes": 16, "p_drop": 0.1, "teacher_seed": 9, "report_n": 2000}
_NOISE = {"curve": "val_loss", "detrend": True, "reference": 1.0}
_E8 = "E8: Cov(t | x) = (diag p - p p^T)/(1 + alpha)"

register_claim(
    "loss-noise-ratio", tags=("E8", "E17"), rule=Sign("+"), predict=_reference, measure=noise_ratio,
    statement="loss noise of the {curve} curve: {teacher} / {than} > {reference} (ratio of seed means; {basis})",
    defaults={"loss-noise-ratio": {**F1_QUICK, **_NOISE, "than": "dirichlet:0.5", "basis": _E8}})
register_claim(
    "E8-loss-noise", tags=("E8", "E17"), rule=Equal(), predict=_e8_predict, measure=noise_ratio,
    statement="std of the {curve} curve: noise({teacher}) / noise({than}) = (s_teacher / s_than)^power, "
              "s = 1/(1 + alpha) (E8 + E17: power 1 for a quadratic part, 1/2 for a linear one)",
    defaults={"E8-loss-noise-quadratic": {**TRIANGLE_ONLINE, **_NOISE, "curve": "excess_risk"},
              "E8-loss-noise-linear": {**TRIANGLE_ONLINE, **_NOISE, "curve": "label_term"}})
register_claim(
    "accuracy-bayes", tags=("E2",), rule=Bound(), predict=bayes_accuracy, measure=lambda cfg: end(cfg, "accuracy"),
    statement="{teacher} student: accuracy at the end <= the Bayes accuracy E_x max_k p_k(x) (orthant integral)",
    defaults={"accuracy-bayes": {**F1_QUICK, "teacher": "bcp", "end_window": 0.1}})
register_claim(
    "paired-difference", tags=("E2", "Prop. 1"), rule=Sign("+"), predict=_zero, measure=paired,
    statement="{quantity} at the end: {teacher} student - {than} student > 0 (paired seeds; {basis})",
    defaults={"paired-difference": {**F1_QUICK, "teacher": "onehot", "than": "bcp", "quantity": "val_loss",
                                    "end_window": 0.1, "basis": "noisier targets, higher risk"}})
register_claim(
    "paper-noise", tags=("paper",), rule=Finding(),
    predict=_paper(PAPER_NOISE_REDUCTION, "up to 30 % less noise (trained Bayesian vs deterministic teachers)"),
    measure=noise_reduction,
    statement="paper: the student of a Bayesian teacher has up to 30 % less loss noise; measured 1 - "
              "noise({teacher}) / noise({than}) of the {curve} curve",
    defaults={"paper-noise": {**F9_QUICK, **_NOISE, "teacher": "trained:ensemble", "than": "trained:deterministic"}})
register_claim(
    "paper-accuracy", tags=("paper",), rule=Finding(),
    predict=_paper(PAPER_ACCURACY_GAIN, "+4.27 % accuracy (read as percentage points)"), measure=paired,
    statement="paper: the student of a Bayesian teacher gains up to +4.27 % accuracy; measured accuracy of the "
              "{teacher} student - the {than} student",
    defaults={"paper-accuracy": {**F9_QUICK, "teacher": "trained:ensemble", "than": "trained:deterministic",
                                 "quantity": "accuracy", "end_window": 0.1}})


def bayes_val_loss(cfg: Mapping[str, Any]) -> float:
    """The validation loss of q = p on the run's evaluation set, mean -log p_y(x) (nats): the floor of
    `val_loss` on these very points for every unbiased teacher (Prop. 1), rebuilt from the loop's
    stream layout (`rng.run_streams(seed).data`)."""
    from ..instruments import EvalSet

    task, _, _ = recipes.objects({**cfg, "student": "linear", "teacher": "bcp"})
    ev = EvalSet.from_task(task, int(cfg["eval_n"]), rng_mod.run_streams(int(cfg["seed"])).data)
    return float(-ev.log_p.gather(-1, ev.y.reshape(-1, 1)).mean())
