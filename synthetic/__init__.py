"""synthetic: classification tasks whose Bayes class probabilities (BCPs) are known exactly.

Every task follows the `Task` protocol (DESIGN 3): `sample(n, rng)`, `bcp(x)` / `log_bcp(x)`,
`bayes_accuracy()`, `conditional_entropy()`, `optimum(gauge, features)`, `standardized()`,
`describe()`. This package knows nothing of students or SGD; it depends on numpy and scipy only.
"""
from __future__ import annotations

from . import validation
from .base import Estimate, Task, bcp_calibration
from .features import affine_feature_map, augmented, features, num_features
from .gaussian import GaussianMixture, HeteroscedasticGaussian
from .linear import fix_gauge, hessian_condition, linear_hessian
from .network import TeacherNetworkTask, mlp_forward
from .standardize import Standardized

TASK_NAMES = ("paper", "triangle", "hetero", "teacher-net")

_FACTORIES = {
    "paper": GaussianMixture.paper,
    "triangle": GaussianMixture.triangle,
    "hetero": HeteroscedasticGaussian.default,
    "teacher-net": TeacherNetworkTask,
}


def make_task(name: str, standardize: bool = False) -> Task:
    """Return the preset task `name` (one of `TASK_NAMES`), standardised (DESIGN 2.6) if asked."""
    task = _FACTORIES[validation.one_of("task", name, TASK_NAMES)]()
    return task.standardized() if standardize else task


__all__ = [
    "TASK_NAMES", "Estimate", "GaussianMixture", "HeteroscedasticGaussian", "Standardized", "Task",
    "TeacherNetworkTask", "affine_feature_map", "augmented", "bcp_calibration", "features", "fix_gauge",
    "hessian_condition", "linear_hessian", "make_task", "mlp_forward", "num_features", "validation",
]
