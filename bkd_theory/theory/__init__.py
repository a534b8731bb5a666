"""Theory: closed forms, constants, bounds and sharp predictions (DESIGN 2.3-2.8), each with its error bar.

- `integrate`: how expectations over x are taken (quadrature on Gaussian mixtures, Monte Carlo
  elsewhere) and the error bar of every prediction.
- `structure`: the gradient at theta* on the nodes (E3; E11 for students with a feature model).
- `predictions`: sigma_T^2 and C_T (E3-E5, general route), closed forms E6-E9, nu_c (E10), and
  the Monte Carlo oracle of per-sample gradients.
- `constants`: H at theta* (mu, L, kappa), local mu and L over a ball, calL (E12) and its
  empirical estimate, F*.
- `bounds`: T1-T4 (E13-E16) as objects with their admissible step sizes.
- `stationary`: E17, E17' (Lyapunov) and its next-order correction, momentum, E18.
- `lyapunov`: E19, the top Lyapunov exponent of linearised bcp SGD and its sign change.
- `distillation`: the KD mixture (E20), preconditioned SGD and Adam (E21), the temperature floor (E22 b).
- `transfer`: the student from a fixed teacher function, finite n (E23) and per-visit SGD (E24).
- `symbolic`: sympy derivations of the one-step recursions and of E8.
- `report`: `predict` (every number for one configuration) and `compare` (measured vs predicted).
"""
from __future__ import annotations

from . import bounds, constants, integrate, lyapunov, predictions, stationary, transfer
from .bounds import THEOREMS, Bound, Constants, Theorem, theorem
from .constants import (
    Curvature,
    LocalConstants,
    Smoothness,
    curvature,
    expected_smoothness,
    expected_smoothness_empirical,
    f_star,
    hessian_at_optimum,
    local_constants,
    training_smoothness,
)
from .integrate import Integrator, Nodes, integrator
from .lyapunov import LyapunovThreshold, lyapunov_threshold, top_lyapunov_exponents
from .predictions import (
    GradientNoise,
    critical_noise,
    gradient_noise,
    gradient_noise_monte_carlo,
    sigma2_closed_form,
)
from .report import QUANTITIES, Prediction, compare, predict
from .stationary import (
    corrected_covariance,
    finite_n,
    heavy_ball_covariance,
    lyapunov_covariance,
    mean_square_threshold,
    neighborhood_excess_risk,
)

__all__ = [
    "Bound", "Constants", "Curvature", "GradientNoise", "Integrator", "LocalConstants", "LyapunovThreshold", "Nodes",
    "Prediction", "QUANTITIES", "Smoothness", "THEOREMS", "Theorem", "bounds", "compare", "constants",
    "corrected_covariance", "critical_noise", "curvature", "expected_smoothness", "expected_smoothness_empirical",
    "f_star", "finite_n", "gradient_noise", "gradient_noise_monte_carlo", "heavy_ball_covariance",
    "hessian_at_optimum", "integrate", "integrator", "local_constants", "lyapunov", "lyapunov_covariance",
    "lyapunov_threshold", "mean_square_threshold", "neighborhood_excess_risk", "predict", "predictions",
    "sigma2_closed_form", "stationary", "theorem", "top_lyapunov_exponents", "training_smoothness", "transfer",
]
