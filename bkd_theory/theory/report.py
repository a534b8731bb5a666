"""`predict`: every theory number for one configuration; `compare`: measured vs predicted.

`predict(task, student, teacher, gamma=...)` gathers, in the student's parameter space and gauge:
sigma_T^2 and tr C_T (E4, E5, general route, with the closed form E6-E11 beside it when one
exists), H at theta* (eigenvalues, mu, L, kappa on the range of H), F* = H(Y|X), calL (E12 on a
stated training set), the admissible step sizes of T1-T4 and the T3/T4 neighborhoods, the sharp
predictions E17 and E17' (and its next-order correction), nu_c (E10), E18 when n is given and,
on request, the E19 Lyapunov threshold. `Prediction.to_dict()` is what `bkd predict --json` prints.
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
from . import bounds, constants, lyapunov, predictions, stationary

if TYPE_CHECKING:  # pragma: no cover
    from synthetic.base import Task

    from ..students import Student

MAX_DENSE_PARAMS = 3000  # H and C are P x P; beyond this only sigma^2 is computed
CORRECTION_MAX_RANK = 64  # "auto" solves the next-order correction (r^2 unknowns) up to this rank
DEFAULT_CALL_N = 10_000
JACOBIAN_BUDGET_BYTES = 512 * 2**20  # share one Monte Carlo sample of J / p when it fits
RTOL = {"E4": 0.0, "E17": 0.10, "E17'": 0.30, "E17' (next order)": 0.30}


def _est(e: Estimate | None) -> tuple[float | None, float | None]:
    return (None, None) if e is None else (float(e.value), float(e.se))


@dataclass(frozen=True)
class Prediction:
    """Theory for one configuration (DESIGN 2.5-2.8). Numbers are per single sample, in the
    student's parameter space; `gauge` says which.

    Estimates carry Monte Carlo SEs over x. Fields that do not apply are None, with a reason in
    `notes`. `H`, `C` (`[P, P]`) are kept for further use but left out of `to_dict`.
    """

    task: str
    student: str
    teacher: str
    gauge: str | None
    num_params: int
    gamma: float
    batch: int
    momentum: float
    n: int | None
    n_mc: int
    seed: int
    sigma2: Estimate
    sigma2_closed_form: Estimate | None
    trace_C: float | None
    kappa_t: float
    H_eig_min: float | None
    H_eig_max: float | None
    kappa: float | None
    null_dim: int | None
    F_star: Estimate
    calL: float
    calL_n: int | None
    calL_method: str
    gamma_max_T1: float
    gamma_max_T2: float | None
    gamma_max_T3: float
    gamma_max_T4: float | None
    bound_T3: float | None
    bound_T4: float | None
    neighborhood_excess_risk: float
    neighborhood_dist2: float | None
    neighborhood_dist2_corrected: float | None
    neighborhood_excess_risk_corrected: float | None
    gamma_mean_square: float | None
    critical_noise: Estimate | None
    finite_n_excess_risk: float | None
    finite_n_dist2: float | None
    gamma_lyapunov: Estimate | None
    notes: tuple[str, ...] = ()
    H: np.ndarray | None = field(default=None, repr=False, compare=False)
    C: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict; an Estimate `q` becomes `q` and `q_se`."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name in ("H", "C"):
                continue
            v = getattr(self, name)
            if isinstance(v, Estimate) or (v is None and name in ("sigma2_closed_form", "critical_noise", "gamma_lyapunov")):
                out[name], out[f"{name}_se"] = _est(v)
            elif isinstance(v, tuple):
                out[name] = list(v)
            elif isinstance(v, (np.floating, np.integer)):
                out[name] = v.item()
            else:
                out[name] = v
        return out


def _admissible(theorem: str, gamma: float, **kw: Any) -> float | None:
    try:
        return bounds.neighborhood(theorem, gamma, **kw)
    except ValueError:
        return None


def predict(task: "Task", student: "Student", teacher: Any, *, gamma: float, batch: int = 1, momentum: float = 0.0,
            n: int | None = None, n_mc: int = predictions.DEFAULT_N_MC, seed: int = 0, calL_n: int | None = None,
            correction: bool | str = "auto", lyapunov_threshold: bool = False) -> Prediction:
    """All theory numbers for one configuration (see the module docstring).

    Args:
        task, student: a realizable pair (ValueError otherwise). Use a float64 student.
        teacher: a `Teacher`, a spec string, or any law with `mean`/`cov` (trained teachers).
        gamma, batch, momentum: SGD hyperparameters (momentum: E17/E17' use gamma / (1 - beta),
            a first-order rule).
        n: training-set size: enables E18 and sets the calL training set.
        n_mc: Monte Carlo inputs for the expectations over x. seed: seed of every draw.
        calL_n: training-set size for calL when n is None (default 10^4; calL grows with n).
        correction: solve the next-order correction of E17' (True / False / "auto" = linear
            student with rank(H) <= 64).
        lyapunov_threshold: also estimate the E19 threshold (a few seconds to a minute).
    """
    teacher = teachers_mod.parse_teacher(teacher)
    gamma = validation.positive("gamma", gamma)
    batch = validation.positive_int("batch", batch)
    momentum = validation.in_interval("momentum", momentum, 0.0, 1.0)
    if momentum >= 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    n = None if n is None else validation.positive_int("n", n, minimum=2)
    notes: list[str] = []
    fm = student.feature_model()
    gauge = None if fm is None else ("full" if fm.rows == task.num_classes else "pinned")
    P = student.num_params
    if str(student.dtype) != "torch.float64":
        notes.append(f"student dtype is {student.dtype}; theory numbers are more accurate with float64")
    dense = P <= MAX_DENSE_PARAMS
    share = n_mc * task.num_classes * P * 8 <= JACOBIAN_BUDGET_BYTES
    jac = predictions.jacobian_sample(task, student, n_mc=n_mc, seed=seed) if share else None
    gn = predictions.gradient_noise(task, student, teacher, n_mc=n_mc, seed=seed, matrix=dense, jac=jac)
    try:
        closed = predictions.sigma2_closed_form(task, student, teacher, n_mc=n_mc, seed=seed, jac=jac)
    except ValueError as err:
        closed = None
        notes.append(f"sigma2_closed_form: {err}")
    unbiased = bool(getattr(teacher, "unbiased", False))
    if not unbiased:
        notes.append("teacher is biased: the minimiser moves off theta*; E17/E17'/E18 assume an unbiased teacher")
    kappa_t = float(np.mean(predictions.target_sum_sq(task, teacher, n_mc=n_mc, seed=seed)))
    f_star = constants.f_star(task)
    H = curv = Q = None
    if dense:
        H = constants.hessian_at_optimum(task, student, n_mc=n_mc, seed=seed)
        curv = constants.curvature(H, constants.null_basis(student))
        Q = curv.basis
    else:
        notes.append(f"P={P} > {MAX_DENSE_PARAMS}: H, C, E17', E18 not computed")
    if fm is not None:
        sm = constants.training_smoothness(task, student, n or calL_n or DEFAULT_CALL_N, batch=batch, seed=seed,
                                           target_factor=kappa_t)
        calL, calL_n_used, calL_method = sm.calL, sm.n, sm.formula
    else:
        noisy = teacher.stochastic and not teacher.needs_x
        emp = constants.expected_smoothness_empirical(task, student, teacher if noisy else None, seed=seed)
        calL, calL_n_used, calL_method = emp.calL.value, None, "empirical: " + emp.region
        notes.append("calL is the empirical estimate (E12 is for the linear student); batch not accounted for")
    mu, L = (curv.mu, curv.L) if curv is not None else (None, None)
    sigma2 = gn.sigma2.value
    gm = {t: (bounds.gamma_max(t, calL=calL, mu=mu, L=L) if (t in ("T1", "T3") or mu is not None) else None) for t in bounds.THEOREMS}
    b3 = _admissible("T3", gamma, mu=mu, calL=calL, sigma2=sigma2) if mu is not None else None
    b4 = _admissible("T4", gamma, mu=mu, L=L, calL=calL, sigma2=sigma2) if mu is not None else None
    for t, b in (("T3", b3), ("T4", b4)):
        if b is None and gm[t] is not None:
            notes.append(f"bound_{t}: gamma={gamma:.4g} is outside (0, {gm[t]:.4g}]")
    g_eff = gamma / (1.0 - momentum)
    if momentum:
        notes.append("momentum: E17/E17' use gamma / (1 - beta), a first-order rule (heavy_ball_covariance checks it)")
    e17 = stationary.neighborhood_excess_risk(sigma2, gamma, batch, momentum)
    e17p = e17c = e17c_risk = gms = fn_risk = fn_dist = None
    if H is not None:
        C = gn.C
        e17p = float(np.trace(stationary.lyapunov_covariance(H, C, g_eff, batch, Q=Q)))
        want = (fm is not None and Q.shape[1] <= CORRECTION_MAX_RANK) if correction == "auto" else bool(correction)
        if want:
            U = predictions.hessian_factors(task, student, n_mc=n_mc, seed=seed, jac=jac)
            w = predictions.target_sum_sq(task, teacher, n_mc=n_mc, seed=seed)
            cs = stationary.corrected_covariance(H, C, U, g_eff, batch, weights=w, Q=Q)
            e17c, e17c_risk, gms = cs.dist2, cs.excess_risk, cs.gamma_ms
            if g_eff >= gms:
                notes.append(f"gamma={g_eff:.4g} >= mean-square threshold {gms:.4g}: the corrected second moment does not exist")
                e17c = e17c_risk = None
            if fm is None:
                notes.append("next-order correction: H_(x,t) = (sum t) H_x is exact for the linear student only")
        if n is not None:
            fn_dist, fn_risk = stationary.finite_n(H, C, n, Q=Q)
    try:
        nu_c = predictions.critical_noise(task, student, n_mc=n_mc, seed=seed, jac=jac)
    except ValueError as err:
        nu_c = None
        notes.append(f"critical_noise: {err}")
    lyap = None
    if lyapunov_threshold:
        lyap = lyapunov.lyapunov_threshold(task, student, gamma_range=(0.5 / calL, 500.0 / calL), batch=batch, seed=seed).gamma
        if momentum:
            notes.append("gamma_lyapunov (E19) is the threshold of plain SGD (no momentum) with bcp targets")
    return Prediction(
        task=str(getattr(task, "name", type(task).__name__)), student=str(student.spec), teacher=str(getattr(teacher, "spec", teacher)),
        gauge=gauge, num_params=P, gamma=gamma, batch=batch, momentum=momentum, n=n,
        n_mc=n_mc, seed=seed, sigma2=gn.sigma2, sigma2_closed_form=closed,
        trace_C=None if gn.C is None else float(np.trace(gn.C)), kappa_t=kappa_t,
        H_eig_min=mu, H_eig_max=L, kappa=None if curv is None else curv.kappa, null_dim=None if curv is None else curv.null_dim,
        F_star=f_star, calL=float(calL), calL_n=calL_n_used, calL_method=calL_method,
        gamma_max_T1=gm["T1"], gamma_max_T2=gm["T2"], gamma_max_T3=gm["T3"], gamma_max_T4=gm["T4"],
        bound_T3=b3, bound_T4=b4, neighborhood_excess_risk=e17, neighborhood_dist2=e17p,
        neighborhood_dist2_corrected=e17c, neighborhood_excess_risk_corrected=e17c_risk, gamma_mean_square=gms,
        critical_noise=nu_c, finite_n_excess_risk=fn_risk, finite_n_dist2=fn_dist, gamma_lyapunov=lyap,
        notes=tuple(notes), H=H, C=gn.C,
    )


_ROWS = (  # (run quantity, claim, prediction field, prediction SE field)
    ("sigma2_at_optimum", "E4", "sigma2", "sigma2"),
    ("excess_risk", "E17", "neighborhood_excess_risk", None),
    ("excess_risk", "E17 (next order)", "neighborhood_excess_risk_corrected", None),
    ("dist2", "E17'", "neighborhood_dist2", None),
    ("dist2", "E17' (next order)", "neighborhood_dist2_corrected", None),
)


def _check_run_matches(config: dict[str, Any], pred: Prediction) -> None:
    """Raise ValueError when the run's configuration is not the one the prediction is for."""
    def differ(key: str, have: Any, want: Any) -> ValueError:
        return ValueError(f"run and prediction differ in {key}: run has {have!r}, prediction {want!r}")

    for key, want in (("gamma", pred.gamma), ("batch", pred.batch), ("momentum", pred.momentum)):
        if key in config and not math.isclose(float(config[key]), float(want), rel_tol=1e-12, abs_tol=0.0):
            raise differ(key, config[key], want)
    for key, want in (("task", pred.task), ("student", pred.student), ("gauge", pred.gauge)):
        if want is not None and key in config and str(config[key]) != str(want):
            raise differ(key, config[key], want)
    if "teacher" in config:
        lam = float(config.get("lam", 1.0))
        try:  # a run with lam < 1 trains on mixture:lam:teacher (the KD objective)
            have = teachers_mod.with_lam(teachers_mod.parse_teacher(str(config["teacher"])), lam).spec
        except ValueError:  # a teacher of x given as an object: its name is the spec
            have = str(config["teacher"]) if lam >= 1.0 else f"mixture:{lam:g}:{config['teacher']}"
        if have != pred.teacher:
            raise differ("teacher", have, pred.teacher)


def compare(run: Any, prediction: Prediction, *, rtol: dict[str, float] | None = None, z_max: float = 4.0) -> pd.DataFrame:
    """Tidy table of measured (stationary mean over the last half, SE across chains) vs predicted.

    Columns: quantity, claim, measured, measured_se, predicted, predicted_se, ratio, z, stationary,
    verdict. z = (measured - predicted) / sqrt(se_m^2 + se_p^2). verdict: "pass" when |z| <= z_max
    or |ratio - 1| <= rtol[claim] (default `RTOL`: exact for E4, 10 % for E17, 30 % for E17'; E17
    and E17' are small-gamma approximations, not identities), "fail" otherwise, "not stationary"
    when the run's stationarity check failed, "n/a" when a side is missing. E17/E17' rows apply to
    the online regime only.

    Args:
        run: a `bkd_theory.records.Run` (its `summary()` and `config` are read).
        prediction: from `predict` for the same configuration (gamma, batch, momentum, teacher are
            checked).
    """
    tol = {**RTOL, **(rtol or {})}
    config = dict(getattr(run, "config", {}) or {})
    _check_run_matches(config, prediction)
    online = str(config.get("regime", "online")) == "online"
    summ = run.summary()["quantities"]
    rows = []
    for q, claim, pf, sef in _ROWS:
        pred = getattr(prediction, pf)
        pred_v, pred_se = (pred.value, pred.se) if isinstance(pred, Estimate) else (pred, 0.0)
        m = summ.get(q)
        row = {"quantity": q, "claim": claim, "measured": math.nan, "measured_se": math.nan,
               "predicted": math.nan if pred_v is None else float(pred_v), "predicted_se": float(pred_se or 0.0),
               "ratio": math.nan, "z": math.nan, "stationary": None, "verdict": "n/a"}
        if m is not None:
            row.update(measured=float(m["value"]), measured_se=float(m["se"]), stationary=m.get("stationary"))
        if m is None or pred_v is None or (claim != "E4" and not online):
            rows.append(row)
            continue
        se = math.hypot(row["measured_se"], row["predicted_se"])
        row["ratio"] = row["measured"] / row["predicted"] if row["predicted"] else math.nan
        row["z"] = (row["measured"] - row["predicted"]) / se if se > 0 else math.nan
        ok = (abs(row["z"]) <= z_max) or (math.isfinite(row["ratio"]) and abs(row["ratio"] - 1) <= tol.get(claim, 0.0))
        row["verdict"] = "not stationary" if row["stationary"] is False else ("pass" if ok else "fail")
        rows.append(row)
    return pd.DataFrame(rows, columns=["quantity", "claim", "measured", "measured_se", "predicted", "predicted_se",
                                       "ratio", "z", "stationary", "verdict"])
