"""`predict`: every theory number for one configuration, each with its error bar; `compare`: a run
beside its prediction, judged by the one verdict rule (`bkd_theory.verdicts`).

`predict(task, student, teacher, gamma=...)` gathers, in the student's parameter space and gauge:
sigma_T^2 and tr C_T (E4, E5, general route, with the closed form E6-E11 beside it when one
exists), H at theta* (mu, L, kappa on the range of H), F* = H(Y|X), calL (E12 on a stated training
set), the admissible step sizes of T1-T4 and the T3/T4 neighborhoods, the sharp predictions E17
and E17' (and the next-order correction), nu_c (E10), E18 when n is given and, on request, the E19
Lyapunov threshold. The distillation protocol (DESIGN 2.10): with `optimizer="adam"` the
neighborhood rows are E21 (`distillation.adam_neighborhood`, `preconditioned_covariance`); for the
KD objective with weight `lam` the E20 rows (kd_sigma2 with the label cross term, lambda_var,
lambda_star, lambda_star_n, the bias B = m^T H^+ m, kd_excess_risk) come from `distillation.kd_noise`
of the base teacher; a teacher-side temperature teacher reports its E22 (b) floor; for a student with a feature model
on exact points, the student from its teacher function (`transfer`): E23 at finite n (bias
F(theta_lam) - F*, variance, cross term) and E24 (stationary SGD around theta_lam). Expectations over x are taken by `integrate.integrator`: quadrature on
Gaussian-mixture tasks, Monte Carlo sized for a relative SE of 1e-3 elsewhere; every number comes
from one function of the nodes, so its error bar (`Estimate.se`) is the same machinery's
(quadrature: the change from a coarser rule; Monte Carlo: batch means). `Prediction.to_dict()` is
what `bkd predict --json` prints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from synthetic import validation
from synthetic.base import Estimate

from .. import teachers as teachers_mod
from ..verdicts import Equal, Outcome
from . import bounds, constants, distillation, integrate, lyapunov, predictions, stationary
from .integrate import Integrator, Nodes

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..students import Student

MAX_DENSE_PARAMS = 3000  # H and C are P x P; beyond this only sigma^2 is computed
CORRECTION_MAX_RANK = 64  # "auto" solves the next-order correction (r^2 unknowns) up to this rank
CORRECTION_MC = 2**16  # Monte Carlo inputs of the next-order correction (fourth moments) where quadrature cannot
DEFAULT_CALL_N = 10_000

#: (key, units, DESIGN tag) of every prediction: `bkd predict` prints them in this order
ROWS = (
    ("sigma2", "grad^2 per sample", "E4"), ("sigma2_closed_form", "grad^2 per sample", "E6-E11"),
    ("trace_C", "grad^2 per sample", "E5"), ("kappa_t", "1", "E(sum t)^2"), ("H_eig_min", "nat/param^2", "mu"),
    ("H_eig_max", "nat/param^2", "L"), ("kappa", "1", "L/mu"), ("F_star", "nat", "Prop. 1"),
    ("calL", "nat/param^2", "E12"), ("gamma_max_T1", "step size", "T1"), ("gamma_max_T2", "step size", "T2"),
    ("gamma_max_T3", "step size", "T3"), ("gamma_max_T4", "step size", "T4"), ("bound_T3", "param^2", "E15"),
    ("bound_T4", "nat", "E16"), ("neighborhood_excess_risk", "nat", "E17"), ("neighborhood_dist2", "param^2", "E17'"),
    ("neighborhood_excess_risk_corrected", "nat", "E17 next order"),
    ("neighborhood_dist2_corrected", "param^2", "E17' next order"), ("gamma_mean_square", "step size", "E17' next order"),
    ("critical_noise", "target variance nu", "E10"), ("finite_n_excess_risk", "nat", "E18"),
    ("finite_n_dist2", "param^2", "E18"), ("gamma_lyapunov", "step size", "E19"),
    ("kd_sigma2", "grad^2 per sample", "E20"), ("lambda_var", "1", "E20"), ("lambda_star", "1", "E20"),
    ("lambda_star_n", "1", "E20"), ("kd_bias_B", "nat", "E20"), ("kd_excess_risk", "nat", "E20"),
    ("kd_finite_n_excess_risk", "nat", "E20"), ("excess_risk_floor", "nat", "E22 (b)"),
    ("kd_T_sigma2", "grad^2 per sample", "E22 (c)"), ("kd_T_bias", "nat", "E22"), ("kd_T_excess_risk", "nat", "E22"),
    ("e23_bias", "nat", "E23"), ("e23_variance", "nat", "E23"), ("e23_cross", "nat", "E23"),
    ("e23_excess_risk", "nat", "E23"), ("e24_draws_term", "nat", "E24"), ("e24_excess_risk", "nat", "E24"),
)
QUANTITIES = tuple(k for k, _, _ in ROWS)


@dataclass(frozen=True)
class Prediction:
    """Theory for one configuration (DESIGN 2.5-2.8), per single sample, in the student's parameter
    space (`gauge` says which). `values[q]` is an `Estimate` (value, SE, method) for each quantity
    of `QUANTITIES` that applies (also readable as `pred.<q>`); the others are absent with a reason
    in `notes`. `H`, `C` (`[P, P]`) are kept for further use but left out of `to_dict`."""

    config: dict[str, Any]
    values: dict[str, Estimate]
    integration: str
    calL_method: str
    notes: tuple[str, ...] = ()
    H: np.ndarray | None = field(default=None, repr=False, compare=False)
    C: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __getattr__(self, name: str) -> Any:
        if name in QUANTITIES:
            return self.values.get(name)
        if name in ("task", "student", "teacher", "gauge", "num_params", "gamma", "batch", "momentum", "n", "seed",
                    "null_dim", "calL_n", "optimizer", "beta1", "beta2", "eps", "lam"):
            return self.config.get(name)
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict: the configuration, then `q` and `q_se` for every quantity (None if absent)."""
        out: dict[str, Any] = dict(self.config)
        for q in QUANTITIES:
            e = self.values.get(q)
            out[q], out[f"{q}_se"] = (None, None) if e is None else (float(e.value), float(e.se))
        out.update(integration=self.integration, calL_method=self.calL_method, notes=list(self.notes))
        return out


@dataclass(frozen=True)
class _Context:
    """Everything `_core` needs besides the nodes."""

    task: Any
    student: Any
    teacher: Any
    gamma: float
    batch: int
    momentum: float
    n: int | None
    dense: bool
    null: np.ndarray
    calL: float
    optimizer: str = "sgd"
    eps: float = 1e-8

    @property
    def g_eff(self) -> float:  # heavy-ball momentum: gamma / (1 - beta) to first order
        return self.gamma / (1.0 - self.momentum)

    @property
    def adam(self) -> bool:
        return self.optimizer == "adam"


def _moments(nodes: Nodes, ctx: _Context) -> dict[str, Any]:
    """Weighted means over the nodes (linear in the weights): the inputs of every prediction."""
    g = predictions.model(ctx.task, ctx.student, nodes)
    db, cov = predictions.teacher_moments(ctx.teacher, nodes)
    second = cov + db[:, :, None] * db[:, None, :]
    units = predictions.unit_traces(g)
    kappa_t = second.sum(axis=(1, 2)) + 1.0 + 2.0 * db.sum(1)  # E[(sum t)^2 | x] = 1^T Cov 1 + (1 + 1^T (tbar - p))^2
    m: dict[str, Any] = {"sigma2": nodes.mean(g.traces(second)),
                         "F_star": nodes.mean(-np.sum(nodes.p * np.log(np.maximum(nodes.p, 1e-300)), axis=1)),
                         "label": nodes.mean(units["label"]), "identity": nodes.mean(units["identity"]),
                         "kappa_t": nodes.mean(kappa_t)}
    try:
        form = predictions.closed_form(ctx.teacher)
        m["sigma2_closed_form"] = sum(a * nodes.mean(units[name]) for name, a in form.coef.items())
    except ValueError:
        pass
    if ctx.dense:
        m["H"] = g.second_moment(np.einsum("nk,kl->nkl", nodes.p, np.eye(nodes.p.shape[1])))
        m["C"] = g.second_moment(second)
    return m


def _derived(m: dict[str, Any], ctx: _Context) -> dict[str, float]:
    """The predictions as functions of the moments (DESIGN 2.5-2.8)."""
    out = {k: float(m[k]) for k in ("sigma2", "kappa_t", "F_star", "sigma2_closed_form") if k in m}
    out["critical_noise"] = float(m["label"] / m["identity"])  # E10
    if not ctx.adam:  # E17 needs sigma^2 only; E21 (Adam) needs diag C
        out["neighborhood_excess_risk"] = stationary.neighborhood_excess_risk(out["sigma2"], ctx.gamma, ctx.batch, ctx.momentum)
    if "H" not in m:
        return out
    H, C = m["H"], m["C"]
    curv = constants.curvature(H, ctx.null)
    out.update(trace_C=float(np.trace(C)), H_eig_min=curv.mu, H_eig_max=curv.L, kappa=curv.kappa)
    if ctx.adam:  # E21: P = diag(1 / (sqrt(C_ii / b) + eps))
        pre = distillation.adam_preconditioner(C, ctx.batch, ctx.eps)
        out["neighborhood_excess_risk"] = distillation.adam_neighborhood(C, ctx.gamma, ctx.batch, ctx.eps)
        S = distillation.preconditioned_covariance(H, C, pre, ctx.gamma, ctx.batch, null=ctx.null)
    else:
        S = stationary.lyapunov_covariance(H, C, ctx.g_eff, ctx.batch, Q=curv.basis)
    out["neighborhood_dist2"] = float(np.trace(S))
    if ctx.n is not None:
        out["finite_n_dist2"], out["finite_n_excess_risk"] = stationary.finite_n(H, C, ctx.n, Q=curv.basis)
    out.update(_bounds(out, ctx))
    return out


def _bounds(core: dict[str, float], ctx: _Context) -> dict[str, float]:
    """Admissible step sizes of T1-T4 and the T3/T4 neighborhoods at gamma (when admissible)."""
    c = bounds.Constants(mu=core["H_eig_min"], calL=ctx.calL, L=core["H_eig_max"], sigma2=core["sigma2"])
    out = {f"gamma_max_{name}": th.admissible(c) for name, th in bounds.THEOREMS.items()}
    for name in ("T3", "T4"):
        try:
            out[f"bound_{name}"] = bounds.THEOREMS[name].neighborhood(ctx.gamma, c)
        except ValueError:
            pass
    return out


def _estimates(integ: Integrator, ctx: _Context) -> tuple[dict[str, Estimate], np.ndarray | None, np.ndarray | None]:
    values, full = integ.evaluate(lambda nodes: _moments(nodes, ctx), lambda m: _derived(m, ctx))
    return values, full.get("H"), full.get("C")


def _calL(task: Any, student: Any, teacher: Any, n: int | None, batch: int, kappa_t: float, seed: int,
          notes: list[str]) -> tuple[Estimate, int | None]:
    if student.feature_model() is not None:
        sm = constants.training_smoothness(task, student, n or DEFAULT_CALL_N, batch=batch, seed=seed, target_factor=kappa_t)
        return Estimate(sm.calL, 0.0, sm.formula), sm.n
    noisy = teacher.stochastic and not teacher.needs_x
    emp = constants.expected_smoothness_empirical(task, student, teacher if noisy else None, seed=seed)
    notes.append("calL is the empirical estimate (E12 is for the linear student); batch not accounted for")
    return Estimate(emp.calL.value, emp.calL.se, "empirical: " + emp.region), None


def _correction(integ: Integrator, ctx: _Context, H: np.ndarray, C: np.ndarray, Q: np.ndarray,
                notes: list[str]) -> dict[str, Estimate]:
    """E17 and E17' to next order and the mean-square threshold gamma_ms, on exact points (Q: the
    range of H, `constants.curvature(H, null).basis`)."""
    if not integ.nodes.exact:  # the residual covariance does not carry the fourth moments this needs
        integ = integrate.monte_carlo(ctx.task, CORRECTION_MC, 0)
        notes.append(f"next-order correction on {integ.method} (the quadrature rule covers second moments only)")
    elif integ.coarse is None and integ.size > CORRECTION_MC:  # i.i.d. nodes: the first CORRECTION_MC suffice
        integ = integrate.monte_carlo(ctx.task, CORRECTION_MC, 0)

    def fn(nodes: Nodes) -> np.ndarray:
        U = predictions.model(ctx.task, ctx.student, nodes).factors()
        w = nodes.w * predictions.target_sum_sq(ctx.task, ctx.teacher, at=nodes)
        cs = stationary.corrected_covariance(H, C, U, ctx.g_eff, ctx.batch, weights=w, Q=Q)
        ok = ctx.g_eff < cs.gamma_ms
        return np.array([cs.excess_risk if ok else math.nan, cs.dist2 if ok else math.nan, cs.gamma_ms])

    value = fn(integ.nodes)
    err = integ.error(fn, value)
    keys = ("neighborhood_excess_risk_corrected", "neighborhood_dist2_corrected", "gamma_mean_square")
    if not np.isfinite(value[0]):
        notes.append(f"gamma={ctx.g_eff:.4g} >= mean-square threshold {value[2]:.4g}: the corrected second moment does not exist")
    return {k: Estimate(float(v), float(e), integ.method) for k, v, e in zip(keys, value, err) if np.isfinite(v)}


def _check_optimizer(optimizer: str, momentum: float, beta1: float, beta2: float, eps: float) -> str:
    """The optimizer's name, lower case; ValueError naming a bad hyperparameter and its range."""
    from ..engine.optim import OPTIMIZERS

    name = str(optimizer).lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS.names())}, got {optimizer!r}")
    for key, value in (("momentum", momentum), ("beta1", beta1), ("beta2", beta2)):
        validation.in_interval(key, value, 0.0, 1.0, upper_open=True)
    validation.positive("eps", eps)
    if name != "sgd" and momentum:
        raise ValueError(f"momentum is heavy-ball SGD's; with optimizer={name!r} use beta1 (got momentum={momentum!r})")
    return name


def _kd_parts(teacher: Any, lam: float) -> tuple[Any, float]:
    """(base teacher, KD weight) of the objective: `teacher` with weight `lam`, or a `Mixture` at lam = 1."""
    lam = validation.in_interval("lam", lam, 0.0, 1.0)
    if lam >= 1.0 and isinstance(teacher, teachers_mod.Mixture):
        return teacher.base, teacher.lam
    return teacher, lam


def _tempered(integ: Integrator, ctx: _Context, base: Any, lam: float, T: float, notes: list[str]) -> dict[str, Estimate]:
    """The E22 rows of the Hinton loss at student temperature T (`theory.temperature`), SGD only."""
    from . import temperature

    T = validation.positive("kd_temperature", T)
    notes.append(f"kd_temperature={T:g}: sigma2, E17 and the bounds are plain cross-entropy's; the tempered "
                 "objective's numbers are the kd_T_ rows")
    if ctx.adam:
        notes.append("kd_T_ rows: E22's stationary term is SGD's (no Adam form)")
    out = {}
    for key, quantity in (("kd_T_sigma2", "sigma2"), ("kd_T_bias", "bias"), ("kd_T_excess_risk", "neighborhood")):
        if quantity == "neighborhood" and ctx.adam:
            continue
        out[key] = temperature.tempered_prediction(ctx.task, ctx.student, base, T, integ, quantity, lam=lam,
                                                   gamma=ctx.gamma, batch=ctx.batch)
    return out


def _kd(integ: Integrator, ctx: _Context, base: Any, lam: float, notes: list[str]) -> dict[str, Estimate]:
    """The E20 numbers (`distillation.kd_rows`) and, for a temperature teacher at lam = 1, the E22 (b) floor."""
    out: dict[str, Estimate] = {}
    if isinstance(base, teachers_mod.Temperature) and lam >= 1.0:
        out["excess_risk_floor"] = distillation.temperature_floor(ctx.task, base.tau, integ.nodes)
        if ctx.student.feature_model() is None:
            notes.append("excess_risk_floor is E_x KL(p || p^(tau)), the floor when the student realizes p^(tau)")
    if not ctx.dense or integ.chunks is not None:
        return out
    def fn(nodes: Nodes) -> np.ndarray:
        kd = distillation.kd_noise(ctx.task, ctx.student, base, nodes)
        return np.array(list(distillation.kd_rows(kd, lam, ctx.g_eff, ctx.batch, ctx.n).values()))

    kd = distillation.kd_noise(ctx.task, ctx.student, base, integ.nodes)
    rows = distillation.kd_rows(kd, lam, ctx.g_eff, ctx.batch, ctx.n)
    err = integ.error(fn, np.array(list(rows.values())))
    out.update({k: Estimate(float(v), float(e), f"E20 on {integ.method}") for (k, v), e in zip(rows.items(), err)})
    if ctx.adam:  # E20's stationary terms are SGD's gamma sigma^2 / (4b)
        for key in ("lambda_star", "kd_excess_risk"):
            out.pop(key)
        notes.append("lambda_star, kd_excess_risk: E20 is for SGD (Adam's noise term is not quadratic in lam)")
    return out


def _transfer(integ: Integrator, ctx: _Context, base: Any, lam: float, notes: list[str]) -> dict[str, Estimate]:
    """The E23 rows (finite n: bias F(theta_lam) - F*, variance, cross term, their sum) and the E24
    rows (stationary SGD around theta_lam; the part of it S per-visit draws divide) of `transfer`,
    for a student with a feature model on exact points; SGD only."""
    from . import transfer

    if ctx.student.feature_model() is None or not integ.nodes.exact or integ.chunks is not None or ctx.adam:
        notes.append("e23_/e24_ rows: need a student with a feature model, exact points (method='monte-carlo' on a "
                     "task whose quadrature has a residual covariance) and SGD")
        return {}
    theta = predictions.theta_star(ctx.task, ctx.student).numpy()
    est = transfer.transfer_estimate(ctx.student, theta, integ, lambda nodes, idx: [transfer.component(base, lam, nodes)])
    g, b = ctx.g_eff, ctx.batch
    out = {"e23_bias": est.estimate(lambda t: t.bias),
           "e24_draws_term": est.estimate(lambda t: t.draws_term(g, b), "E24"),
           "e24_excess_risk": est.estimate(lambda t: t.neighborhood(g, b), "E24")}
    if ctx.n is not None:
        n = ctx.n
        out.update(e23_variance=est.estimate(lambda t: t.variance_n / n),
                   e23_cross=est.estimate(lambda t: t.cross_n / n),
                   e23_excess_risk=est.estimate(lambda t: t.finite_n(n)))
    return out


def _distillation(integ: Integrator, ctx: _Context, base: Any, lam: float, kd_temperature: float | None,
                  notes: list[str]) -> dict[str, Estimate]:
    """The tempered rows (E22) at a student temperature, else the E20 and E23/E24 rows."""
    if kd_temperature is not None:
        return _tempered(integ, ctx, base, lam, kd_temperature, notes)
    return {**_kd(integ, ctx, base, lam, notes), **_transfer(integ, ctx, base, lam, notes)}


def predict(task: "Task", student: "Student", teacher: Any, *, gamma: float, batch: int = 1, momentum: float = 0.0,
            n: int | None = None, n_mc: int | None = None, seed: int = 0, calL_n: int | None = None,
            correction: bool | str = "auto", lyapunov_threshold: bool = False, method: str = "auto",
            optimizer: str = "sgd", beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
            lam: float = 1.0, kd_temperature: float | None = None) -> Prediction:
    """All theory numbers for one configuration (see the module docstring).

    Args:
        task, student: a realizable pair (ValueError otherwise). Use a float64 student.
        teacher: a `Teacher` or a spec string; with `lam` < 1 the objective is `Mixture(lam, teacher)`
            (E20; a `Mixture` given at lam = 1 is split into its base and weight for the E20 rows).
        gamma, batch, momentum: SGD hyperparameters (momentum: E17/E17' use gamma / (1 - beta),
            a first-order rule).
        optimizer, beta1, beta2, eps: the update rule ("sgd" or "adam"); with Adam,
            neighborhood_excess_risk and neighborhood_dist2 are E21 (beta1, beta2 do not enter to
            first order) and the SGD-only rows (next-order correction, E19) are left out.
        n: training-set size: enables E18 and sets the calL training set.
        n_mc: Monte Carlo inputs (default: sized for a relative SE of 1e-3 on sigma^2), used where
            quadrature does not apply. seed: seed of every draw. method: "auto", "quadrature", "monte-carlo".
        calL_n: training-set size for calL when n is None (default 10^4; calL grows with n).
        correction: solve the next-order correction of E17' (True / False / "auto" = a student with
            a feature model and rank(H) <= 64).
        lyapunov_threshold: also estimate the E19 threshold (a few seconds to a minute).
        kd_temperature: the student-side temperature T of the Hinton loss (E22): adds the kd_T_ rows
            (sigma^2 at the tempered optimum, its bias F(theta_T) - F*, the stationary E[F - F*]).
    """
    base, lam = _kd_parts(teachers_mod.parse_teacher(teacher), lam)
    teacher = teachers_mod.with_lam(base, lam)
    gamma, batch = validation.positive("gamma", gamma), validation.positive_int("batch", batch)
    optimizer = _check_optimizer(optimizer, momentum, beta1, beta2, eps)
    n = None if n is None else validation.positive_int("n", n, minimum=2)
    notes = _notes(student, teacher, momentum)
    if optimizer == "adam":
        notes.append("adam: E21 (P = diag(1 / (sqrt(C_ii / b) + eps))); T1-T4 and the next-order rows are SGD's")
        correction, lyapunov_threshold = False, False
    P, fm = student.num_params, student.feature_model()
    pilot = lambda nodes: predictions.model(task, student, nodes).traces(predictions.noise_matrices(teacher, nodes)[1])  # noqa: E731
    integ = integrate.integrator(task, student, teacher, n_mc=n_mc, seed=seed, method=method, pilot=pilot)
    null = constants.null_basis(student)
    kappa_t = float(integ.mean(lambda nodes: predictions.target_sum_sq(task, teacher, at=nodes)))  # scales calL (E12)
    calL, calL_n_used = _calL(task, student, teacher, n or calL_n, batch, kappa_t, seed, notes)
    ctx = _Context(task, student, teacher, gamma, batch, momentum, n, P <= MAX_DENSE_PARAMS, null, calL.value,
                   optimizer, float(eps))
    values, H, C = _estimates(integ, ctx)
    values.update(_distillation(integ, ctx, base, lam, kd_temperature, notes))
    notes += _precision_notes(values, integ)
    values["calL"] = calL
    curv = None if H is None else constants.curvature(H, null)  # once: the correction's basis and null_dim
    if H is None:
        notes.append(f"P={P} > {MAX_DENSE_PARAMS}: H, C, E17', E18 not computed")
    elif (fm is not None and P - null.shape[1] <= CORRECTION_MAX_RANK) if correction == "auto" else bool(correction):
        values.update(_correction(integ, ctx, H, C, curv.basis, notes))
    if lyapunov_threshold:
        values["gamma_lyapunov"] = lyapunov.lyapunov_threshold(task, student, gamma_range=(0.5 / calL.value, 500.0 / calL.value),
                                                             batch=batch, seed=seed).gamma
    config = {**_identity(task, student, teacher), "gamma": gamma, "batch": batch, "momentum": momentum,
              "optimizer": optimizer, "beta1": float(beta1), "beta2": float(beta2), "eps": float(eps), "lam": lam, "n": n,
              "seed": seed, "calL_n": calL_n_used, "null_dim": None if curv is None else curv.null_dim}
    return Prediction(config, values, integ.method, calL.method, tuple(notes + _range_notes(values, gamma)), H, C)


def _identity(task: "Task", student: "Student", teacher: Any) -> dict[str, Any]:
    """What the prediction is of: task and student names, teacher spec, gauge, number of parameters."""
    fm = student.feature_model()
    return {"task": str(getattr(task, "name", type(task).__name__)), "student": student.spec, "teacher": teacher.spec,
            "gauge": None if fm is None else ("full" if fm.rows == task.num_classes else "pinned"),
            "num_params": student.num_params}


def _notes(student: Any, teacher: Any, momentum: float) -> list[str]:
    notes = []
    if str(student.dtype) != "torch.float64":
        notes.append(f"student dtype is {student.dtype}; theory numbers are more accurate with float64")
    if not teacher.unbiased:
        notes.append("teacher is biased: the minimiser moves off theta*; E17/E17'/E18 assume an unbiased teacher")
    if momentum:
        notes.append("momentum: E17/E17' use gamma / (1 - beta), a first-order rule (heavy_ball_covariance checks it)")
    return notes


def _precision_notes(values: dict[str, Estimate], integ: Integrator) -> list[str]:
    """A note when Monte Carlo leaves sigma^2 less precise than `integrate.TARGET_RSE`."""
    rse = values["sigma2"].se / abs(values["sigma2"].value) if values["sigma2"].value else 0.0
    if integ.kind == "monte carlo" and rse > integrate.TARGET_RSE:
        return [f"sigma2 has a relative SE of {rse:.1e}, above the target {integrate.TARGET_RSE:g} at {integ.size} "
                "Monte Carlo inputs: pass a larger n_mc"]
    return []


def _range_notes(values: dict[str, Estimate], gamma: float) -> list[str]:
    return [f"bound_{t}: gamma={gamma:.4g} is outside (0, {values[f'gamma_max_{t}'].value:.4g}]"
            for t in ("T3", "T4") if f"gamma_max_{t}" in values and f"bound_{t}" not in values]


_ROWS = (  # (run quantity, claim, prediction field)
    ("sigma2_at_optimum", "E4", "sigma2"),
    ("excess_risk", "E17", "neighborhood_excess_risk"),
    ("excess_risk", "E17 (next order)", "neighborhood_excess_risk_corrected"),
    ("dist2", "E17'", "neighborhood_dist2"),
    ("dist2", "E17' (next order)", "neighborhood_dist2_corrected"),
)


def _check_run_matches(config: dict[str, Any], pred: Prediction) -> None:
    """Raise ValueError when the run's configuration is not the one the prediction is for."""
    def differ(key: str, have: Any, want: Any) -> ValueError:
        return ValueError(f"run and prediction differ in {key}: run has {have!r}, prediction {want!r}")

    for key in ("gamma", "batch", "momentum"):
        if key in config and not math.isclose(float(config[key]), float(pred.config[key]), rel_tol=1e-12, abs_tol=0.0):
            raise differ(key, config[key], pred.config[key])
    for key in ("task", "student", "gauge", "optimizer"):
        want = pred.config.get(key)
        if want is not None and key in config and str(config[key]) != str(want):
            raise differ(key, config[key], want)
    if "teacher" in config:
        lam = float(config.get("lam", 1.0))
        try:  # a run with lam < 1 trains on mixture:lam:teacher (the KD objective)
            have = teachers_mod.with_lam(teachers_mod.parse_teacher(str(config["teacher"])), lam).spec
        except ValueError:  # a teacher given as an object: its name is the spec
            have = str(config["teacher"]) if lam >= 1.0 else f"mixture:{lam:g}:{config['teacher']}"
        if have != pred.teacher:
            raise differ("teacher", have, pred.teacher)


def compare(run: Any, prediction: Prediction) -> pd.DataFrame:
    """Tidy table of measured (stationary mean over the last half, its SE) vs predicted (its SE).

    Columns: quantity, claim, measured, measured_se, predicted, predicted_se, ratio, z, stationary,
    verdict. The verdict is `verdicts.Equal`: agrees when |z| <= 4 with z = (measured - predicted) /
    sqrt(se_m^2 + se_p^2), "not stationary" when the run's per-quantity stationarity check failed,
    "n/a" when a side is missing; E17/E17' rows apply to the online regime only.
    """
    config = dict(getattr(run, "config", {}) or {})
    _check_run_matches(config, prediction)
    online = str(config.get("regime", "online")) == "online"
    summ = run.summary()["quantities"]
    rows = []
    for q, claim, field_ in _ROWS:
        pred, m = prediction.values.get(field_), summ.get(q)
        row = {"quantity": q, "claim": claim, "measured": math.nan, "measured_se": math.nan, "ratio": math.nan,
               "predicted": math.nan if pred is None else pred.value, "predicted_se": math.nan if pred is None else pred.se,
               "z": math.nan, "stationary": None, "verdict": "n/a"}
        if m is not None:
            row.update(measured=float(m["value"]), measured_se=float(m["se"]), stationary=m.get("stationary"))
        if m is not None and pred is not None and (claim == "E4" or online):
            meas = Outcome(row["measured"], row["measured_se"], stationary=m.get("stationary"), reason=m.get("stationary_reason", ""))
            v = Equal()(Outcome(pred.value, pred.se), meas)
            row.update(z=v.z, verdict=v.verdict, ratio=row["measured"] / pred.value if pred.value else math.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["quantity", "claim", "measured", "measured_se", "predicted", "predicted_se",
                                       "ratio", "z", "stationary", "verdict"])
