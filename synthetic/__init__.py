"""synthetic: classification tasks whose Bayes class probabilities (BCPs) are known exactly.

Every task follows the `Task` protocol (DESIGN 3): `sample(n, rng)`, `bcp(x)` / `log_bcp(x)`,
`bayes_accuracy()`, `conditional_entropy()`, `describe()`, and the declared
realizability hooks `logit_weights(features)` / `network()`. This package knows nothing of students
or SGD; it depends on numpy and scipy only. Presets register themselves (`@register_task`);
`make_task(name)` builds one, or a user's own task named `package.module:Name`.
"""
from __future__ import annotations

from . import validation
from .base import TASKS, Estimate, Network, Task, as_generator, bcp_calibration, register_task
from .features import affine_feature_map, augmented, features, num_features
from .gaussian import GaussianMixture, HeteroscedasticGaussian
from .network import TeacherNetworkTask, mlp_forward
from .registry import Registry, load_object
from . import standardize as _std
from .standardize import Standardized, standardize


def task_names() -> tuple[str, ...]:
    """The names of the registered task presets, in registration order."""
    return TASKS.names()


def make_task(name: str, standardize: bool = False) -> Task:
    """Return the preset task `name`, or a user's task `package.module:Name` (a `Task` subclass or a
    zero-argument factory returning a Task), standardised (DESIGN 2.6) if asked."""
    if not isinstance(name, str):
        raise ValueError(f"task must be a name like 'triangle' or package.module:Name, got {name!r}")
    factory = load_object(name, "task") if ":" in name else TASKS.get(name).obj
    try:
        task = factory()
    except TypeError as err:
        raise ValueError(f"task {name!r} must be a Task class or factory callable with no arguments ({err})") from None
    if not isinstance(task, Task):
        raise ValueError(f"task {name!r} must build a synthetic.Task, got {type(task).__name__}")
    return _std.standardize(task) if standardize else task


__all__ = [
    "Estimate", "GaussianMixture", "HeteroscedasticGaussian", "Network", "Registry", "Standardized", "TASKS", "Task",
    "TeacherNetworkTask", "affine_feature_map", "as_generator", "augmented", "bcp_calibration", "features",
    "load_object", "make_task", "mlp_forward", "num_features", "register_task", "standardize", "task_names", "validation",
]
