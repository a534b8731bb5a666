"""Teacher quality: a teacher p~(x) measured against the TRUE BCP p of a synthetic task.

`pointwise_metrics` compares p~ with p per input (KL(p || p~), L2, Brier against p, confidence and
the true probability of the teacher's top class); `ece_against_truth` is the calibration error
with the true p in place of label frequencies; `teacher_report` turns those into `Estimate`s with
SEs on n fresh samples, and `paired_difference` compares two teachers on the same points. Works
for any object with `log_proba(x)` or `predict_proba(x)` `[N, K]`: the trained teachers of
`teachers.trained`, or a `FunctionTeacher` around the exact `task.log_bcp`.

The protocol of DESIGN 2.10 measures a teacher on the points the student trains on as well as on
fresh ones: `quality_at` reports KL, L2, Brier, ECE against p and the over/under-confidence at
given points (averaged over several component teachers, e.g. the folds of a cross-fitted one),
`reliability` is the binned confidence against the true probability of the top class,
`fit_quality` does both for a fitted teacher, and `over_seeds` gives the mean +- SE over seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from synthetic import validation
from synthetic.base import Estimate

from .. import rng as rng_mod
from ..stats import Z, estimate, mean_se

__all__ = ["TeacherReport", "ece_against_truth", "fit_quality", "over_seeds", "paired_difference", "pointwise_metrics",
           "per_training_set", "quality_at", "reliability", "teacher_report", "calibration_side"]


def pointwise_metrics(teacher: Any, x: np.ndarray, log_p: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample comparison of p~ with the true p, each `[N]` (except "probs" `[N, K]`).

    Keys: "kl" = KL(p || p~) (nats), "l2" = ||p~ - p||_2, "brier" = sum_k (p~_k - p_k)^2,
    "confidence" = max_k p~_k, "true_prob" = p_a(x) with a = argmax_k p~_k (the chance that the
    teacher's top class is right), "argmax" = a, "bayes" = argmax_k p_k, "probs" = p~.

    Args:
        teacher: any object with `log_proba(x)` or `predict_proba(x)` `[N, K]`.
        x: inputs `[N, d]`. log_p: the task's log BCPs at x `[N, K]`.
    """
    if hasattr(teacher, "log_proba"):
        log_pt = np.asarray(teacher.log_proba(x), dtype=np.float64)
    else:
        log_pt = np.log(np.clip(np.asarray(teacher.predict_proba(x), dtype=np.float64), 1e-300, None))
    if log_pt.shape != log_p.shape:
        raise ValueError(f"teacher must return probabilities of shape {log_p.shape}, got {log_pt.shape}")
    p, pt = np.exp(log_p), np.exp(log_pt)
    a, rows = pt.argmax(axis=1), np.arange(len(pt))
    brier = ((pt - p) ** 2).sum(axis=1)
    return {"kl": np.where(p > 0, p * (log_p - log_pt), 0.0).sum(axis=1), "l2": np.sqrt(brier), "brier": brier,
            "confidence": pt[rows, a], "true_prob": p[rows, a], "argmax": a, "bayes": p.argmax(axis=1), "probs": pt}


def ece_against_truth(confidence: np.ndarray, true_prob: np.ndarray, *, bins: int = 15) -> float:
    """ECE against the true p: sum_b (n_b / n) |mean_b confidence - mean_b p_{argmax p~}(x)|.

    Bins: `bins` equal-width intervals of [0, 1] in the confidence max_k p~_k. A bin's accuracy is
    the mean TRUE probability of the teacher's top class, not a label frequency, so the exact
    teacher has ECE = 0 exactly (no label-sampling bias).
    """
    idx = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    return float(np.abs(np.bincount(idx, weights=confidence - true_prob, minlength=bins)).sum() / len(confidence))


@dataclass(frozen=True)
class TeacherReport:
    """A teacher measured against the true BCP p on n fresh samples.

    Attributes:
        estimates: metric name -> `Estimate`: "kl" mean KL(p || p~) (nats); "l2" mean ||p~ - p||;
            "brier" Brier score against p, mean sum_k (p~_k - p_k)^2; "brier_labels" ordinary Brier
            score mean ||p~ - e_y||^2 (its expectation is brier + 1 - E||p||^2); "ece"
            (`ece_against_truth`, bootstrap SE); "accuracy" against the sampled labels;
            "bayes_agreement" argmax p~ == argmax p; "confidence" mean max_k p~_k.
        train_time: fitting time in seconds (nan if unknown).
    """

    name: str
    n: int
    estimates: dict[str, Estimate]
    train_time: float

    def __getitem__(self, metric: str) -> Estimate:
        return self.estimates[metric]

    def to_dict(self) -> dict[str, Any]:
        """Flat dict: name, n, train_time, and `<metric>` / `<metric>_se` for every metric."""
        out: dict[str, Any] = {"name": self.name, "n": self.n, "train_time": self.train_time}
        for m, est in self.estimates.items():
            out[m], out[f"{m}_se"] = est.value, est.se
        return out


def _eval_sample(task: Any, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = validation.positive_int("n", n, minimum=2)
    x, y = task.sample(n, rng_mod.stream(seed, "teacher.quality", 0))
    return x, y, task.log_bcp(x)


def teacher_report(teacher: Any, task: Any, n: int, seed: int = 0, *, bins: int = 15,
                   bootstrap: int = 200) -> TeacherReport:
    """Measure a teacher against the true BCP on n fresh samples from `task`.

    The sample comes from `rng.stream(seed, "teacher.quality", 0)`: teachers reported with the same (task, n,
    seed) are compared on the same points. SE: std/sqrt(n) for means; for the ECE, the std of
    `bootstrap` ECEs on resampled points (generator `rng.stream(seed, "teacher.quality", 1)`).

    Args:
        teacher: a `TrainedTeacher` or any object with `predict_proba(x)` `[N, K]`.
        task: a `synthetic` task (sample, log_bcp). n: evaluation sample size. bins: ECE bins.
    """
    validation.positive_int("bins", bins)
    validation.positive_int("bootstrap", bootstrap, minimum=2)
    x, y, log_p = _eval_sample(task, n, seed)
    m = pointwise_metrics(teacher, x, log_p)
    per_sample = {"kl": m["kl"], "l2": m["l2"], "brier": m["brier"],
                  "brier_labels": ((m["probs"] - np.eye(log_p.shape[1])[y]) ** 2).sum(axis=1),
                  "accuracy": (m["argmax"] == y).astype(float),
                  "bayes_agreement": (m["argmax"] == m["bayes"]).astype(float), "confidence": m["confidence"]}
    est = {k: estimate(v, f"mean over {n} fresh samples; se = std/sqrt(n)") for k, v in per_sample.items()}
    boot = rng_mod.stream(seed, "teacher.quality", 1)
    eces = [ece_against_truth(m["confidence"][i], m["true_prob"][i], bins=bins)
            for i in (boot.integers(0, n, n) for _ in range(bootstrap))]
    est["ece"] = Estimate(ece_against_truth(m["confidence"], m["true_prob"], bins=bins), float(np.std(eces, ddof=1)),
                          f"ECE against true p, {bins} bins, {n} fresh samples; se = bootstrap ({bootstrap})")
    order = ("kl", "l2", "brier", "brier_labels", "ece", "accuracy", "bayes_agreement", "confidence")
    label = getattr(teacher, "spec", None) or getattr(teacher, "name", None) or type(teacher).__name__
    return TeacherReport(str(label), n, {k: est[k] for k in order},
                         float(getattr(teacher, "train_time", float("nan"))))


def paired_difference(a: Any, b: Any, task: Any, n: int, seed: int = 0, *, metric: str = "kl") -> Estimate:
    """Mean of metric(a) - metric(b) on the SAME n points as `teacher_report`; se = std(diff)/sqrt(n).

    Pairing removes the variation of x shared by both teachers. `metric`: "kl", "l2" or "brier".
    """
    validation.one_of("metric", metric, ("kl", "l2", "brier"))
    x, _, log_p = _eval_sample(task, n, seed)
    diff = pointwise_metrics(a, x, log_p)[metric] - pointwise_metrics(b, x, log_p)[metric]
    return estimate(diff, f"paired mean difference of {metric} over {n} fresh samples; se = std/sqrt(n)")


# ----------------------------------------------------------------------------------------------
# The protocol of DESIGN 2.10: quality on the student's training points and on fresh points

#: the metrics of `quality_at`, in report order
QUALITY_METRICS = ("kl", "l2", "brier", "ece", "overconfidence", "over", "under", "confidence", "bayes_agreement")


def _mean_estimate(v: np.ndarray, what: str) -> Estimate:
    m, se, n = mean_se(v)
    return Estimate(m, se, f"mean of {what} over {n} points; se = std/sqrt(n)")


def quality_at(teachers: Any, x: np.ndarray, log_p: np.ndarray, *, name: str | None = None, bins: int = 15,
               bootstrap: int = 200, seed: int = 0) -> TeacherReport:
    """A teacher (or the mean over several, e.g. the folds of a cross-fitted one) against the true p at x.

    Metrics (`QUALITY_METRICS`), per point averaged over the teachers, then mean +- std/sqrt(N):
    "kl" KL(p || p~) (nats), "l2", "brier" against p, "overconfidence" = confidence - p_a(x) with
    a = argmax p~ (signed: > 0 over-, < 0 under-confident), "over" / "under" its positive and
    negative parts, "confidence", "bayes_agreement". "ece" (`ece_against_truth`) pools the
    teachers' (confidence, p_a) pairs; its SE is the std of `bootstrap` ECEs over resampled points
    (generator `rng.stream(seed, "teacher.quality", 2)`).

    Args:
        teachers: one teacher or a list (each with `log_proba` or `predict_proba`).
        x: the points `[N, d]`. log_p: the task's log BCPs there `[N, K]`.
    """
    validation.positive_int("bins", bins)
    validation.positive_int("bootstrap", bootstrap, minimum=2)
    group = list(teachers) if isinstance(teachers, (list, tuple)) else [teachers]
    if not group or len(x) < 2:
        raise ValueError(f"teachers must be non-empty and x must hold >= 2 points, got {len(group)} and {len(x)}")
    ms = [pointwise_metrics(t, x, log_p) for t in group]
    conf, true = np.stack([m["confidence"] for m in ms]), np.stack([m["true_prob"] for m in ms])  # [C, N]
    gap = conf - true
    per = {"kl": [m["kl"] for m in ms], "l2": [m["l2"] for m in ms], "brier": [m["brier"] for m in ms],
           "overconfidence": gap, "over": np.clip(gap, 0, None), "under": np.clip(-gap, 0, None), "confidence": conf,
           "bayes_agreement": [(m["argmax"] == m["bayes"]).astype(float) for m in ms]}
    est = {k: _mean_estimate(np.mean(np.asarray(v), axis=0), k) for k, v in per.items()}
    ece = lambda i: ece_against_truth(conf[:, i].ravel(), true[:, i].ravel(), bins=bins)  # noqa: E731
    boot = rng_mod.stream(seed, "teacher.quality", 2)
    eces = [ece(boot.integers(0, len(x), len(x))) for _ in range(bootstrap)]
    est["ece"] = Estimate(ece(np.arange(len(x))), float(np.std(eces, ddof=1)),
                          f"ECE against true p, {bins} bins, {len(x)} points x {len(group)} teachers; se = bootstrap")
    label = name or getattr(group[0], "spec", None) or type(group[0]).__name__
    return TeacherReport(str(label), len(x), {k: est[k] for k in QUALITY_METRICS},
                         float(sum(getattr(t, "train_time", float("nan")) for t in group)))


def reliability(teachers: Any, x: np.ndarray, log_p: np.ndarray, *, bins: int = 10) -> Any:
    """The reliability table against p: `bins` equal-width confidence bins of [0, 1] (pandas frame).

    Columns: lo, hi, count, confidence and true_prob (mean max_k p~_k and mean p_a(x), a = argmax
    p~, over the bin's (point, teacher) pairs) with their SEs, gap = confidence - true_prob and
    gap_se. A calibrated teacher has gap 0 in every bin.
    """
    import pandas as pd

    validation.positive_int("bins", bins)
    group = list(teachers) if isinstance(teachers, (list, tuple)) else [teachers]
    ms = [pointwise_metrics(t, x, log_p) for t in group]
    conf = np.concatenate([m["confidence"] for m in ms])
    true = np.concatenate([m["true_prob"] for m in ms])
    idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
    rows = []
    for b in range(bins):
        sel = idx == b
        (c, c_se, n), (t, t_se, _), (g, g_se, _) = (mean_se(v[sel]) for v in (conf, true, conf - true))
        rows.append(dict(lo=b / bins, hi=(b + 1) / bins, count=n, confidence=c, confidence_se=c_se, true_prob=t,
                         true_prob_se=t_se, gap=g, gap_se=g_se))
    return pd.DataFrame(rows)


def fit_quality(teacher: Any, task: Any, x_train: np.ndarray, *, fresh_n: int, seed: int = 0,
                bins: int = 15) -> dict[str, TeacherReport]:
    """{"train": quality at the student's training points x_train `[n, d]`, "fresh": at `fresh_n`
    fresh points of `task` (stream `rng.stream(seed, "teacher.quality", 0)`, shared by teachers
    reported with the same seed)}. A table teacher (`fitting.PointTeacher`) answers only at its
    points: fresh points are measured on its components and averaged (`quality_at`)."""
    x_train = validation.finite_array("x_train", x_train, ndim=2)
    x, _, log_p = _eval_sample(task, fresh_n, seed)
    fresh = getattr(teacher, "components", None) or teacher
    name = getattr(teacher, "spec", None)
    return {"train": quality_at(teacher, x_train, task.log_bcp(x_train), name=name, bins=bins, seed=seed),
            "fresh": quality_at(fresh, x, log_p, name=name, bins=bins, seed=seed)}


def over_seeds(reports: list[TeacherReport]) -> dict[str, Estimate]:
    """metric -> mean +- SE over the reports of independent seeds (`stats.mean_se`; SE nan for one seed)."""
    if not reports:
        raise ValueError("reports must hold at least one TeacherReport, got none")
    out = {}
    for metric in reports[0].estimates:
        m, se, n = mean_se([r[metric].value for r in reports])
        out[metric] = Estimate(m, se, f"mean over {n} seeds; se = std/sqrt(seeds)")
    return out


def per_training_set(table: Any, task: Any, *, fresh_n: int, seed: int = 0) -> list[dict[str, TeacherReport]]:
    """`fit_quality` of each training set (chain) of a table teacher (`fitting.PointTeacher`, `groups`):
    at its own training points (its targets there) and, for its components, at `fresh_n` fresh points
    (the same fresh points for every set: pair them, or take `over_seeds` of the list)."""
    x, _, log_p = _eval_sample(task, fresh_n, seed)
    out = []
    for rows, comps in table.groups:
        xt = table.points[rows]
        group = [table.components[c] for c in comps]
        out.append({"train": quality_at(table, xt, task.log_bcp(xt), name=table.spec, seed=seed),
                    "fresh": quality_at(group, x, log_p, name=table.spec, seed=seed)})
    return out


def calibration_side(report: TeacherReport) -> str:
    """"over-confident" / "under-confident" when the mean confidence gap is beyond Z SE of 0, else "calibrated"."""
    e = report["overconfidence"]
    if abs(e.value) <= Z * e.se:
        return "calibrated"
    return "over-confident" if e.value > 0 else "under-confident"
