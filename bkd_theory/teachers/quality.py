"""Teacher quality: a teacher p~(x) measured against the TRUE BCP p of a synthetic task.

`pointwise_metrics` compares p~ with p per input (KL(p || p~), L2, Brier against p, confidence and
the true probability of the teacher's top class); `ece_against_truth` is the calibration error
with the true p in place of label frequencies; `teacher_report` turns those into `Estimate`s with
SEs on n fresh samples, and `paired_difference` compares two teachers on the same points. Works
for any object with `log_proba(x)` or `predict_proba(x)` `[N, K]`: the trained teachers of
`teachers.trained`, or a `FunctionTeacher` around the exact `task.log_bcp`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthetic import validation
from synthetic.base import Estimate

from .. import rng as rng_mod

__all__ = ["TeacherReport", "ece_against_truth", "paired_difference", "pointwise_metrics", "teacher_report"]


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
    est = {k: Estimate(float(v.mean()), float(v.std(ddof=1) / math.sqrt(n)), f"mean over {n} fresh samples; "
                       "se = std/sqrt(n)") for k, v in per_sample.items()}
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
    return Estimate(float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n)),
                    f"paired mean difference of {metric} over {n} fresh samples; se = std/sqrt(n)")
