"""Students stacked over R independent SGD chains (DESIGN 2.5, 4).

- `Student` (`base`): the protocol every engine, instrument and theory function uses.
- `Linear` (`linear`): the linear softmax student, closed-form E11 gradients, fused SGD step.
- `MLP` (`mlp`): a fully connected network with a hand-written batch backward pass.
- `ModuleStudent` (`module`): any `torch.nn.Module`, stacked over chains with `torch.func`.
  `Linear` and `MLP` are its fast specialisations (tested against it on the same weights).
- `kd`: the per-sample loss and its logit residual, one definition for every student: E1, or the
  Hinton loss at a student temperature (E22) for `KDTargets`.
- `build_student(spec, task, ...)` (`registry`): "linear", "mlp:64x64:tanh", or
  `package.module:Name`; students register themselves (`@register_student`).

Slow, obvious references with the same signatures live in `tests/oracles.py`.
"""
from __future__ import annotations

from .base import DTYPES, FeatureModel, Student, as_dtype, dtype_name
from .kd import KDTargets, logit_residual, temper
from .registry import STUDENTS, build_student, register_student
from .linear import SMALL_BATCH, Linear, fix_gauge, torch_features
from .mlp import ACTIVATIONS, DERIVATIVES, MLP
from .module import ModuleStudent

__all__ = [
    "ACTIVATIONS", "DERIVATIVES", "DTYPES", "FeatureModel", "KDTargets", "Linear", "MLP", "ModuleStudent", "SMALL_BATCH",
    "STUDENTS", "Student", "as_dtype", "build_student", "dtype_name", "fix_gauge", "logit_residual", "temper",
    "register_student", "torch_features",
]
