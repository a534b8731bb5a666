"""`build`: the ONE place where names become objects (DESIGN 4).

`sgd.run`, the CLI, the sweeps and the claims all call it. It takes a `RunConfig` (or field
overrides) and optionally objects in place of names: a `Task`, a `Student`, a `Teacher`. An object
given is used as is and never re-parsed; its spec is written into the config, so the record says
what ran. A keyword that contradicts an object is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import synthetic
from synthetic.base import Task
from synthetic.standardize import Standardized

from ..students import Student, build_student
from ..students.base import dtype_name
from ..teachers import Teacher, parse_teacher, with_lam
from ..teachers.fitbase import check_task
from .config import RunConfig, check_device
from .optim import UpdateRule, build_optimizer

__all__ = ["Setup", "build"]


@dataclass(frozen=True)
class Setup:
    """The objects of one run.

    Attributes:
        config: the complete `RunConfig` (object specs filled in).
        task, student: the task and the student.
        teacher: the law SGD trains on: the given teacher with the run's KD weight lam applied
            (`teachers.with_lam`). base_teacher: the teacher as given.
        optimizer: the update rule (`engine.optim`).
    """

    config: RunConfig
    task: Task
    student: Student
    teacher: Teacher
    base_teacher: Teacher
    optimizer: UpdateRule


def _object_fields(task: Task | None, student: Student | None, teacher: Teacher | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if task is not None:
        fields.update(task=str(getattr(task, "name", type(task).__name__)), standardize=isinstance(task, Standardized))
    if student is not None:
        fields.update(student=student.spec, dtype=dtype_name(student.dtype), **student_options(student))
    if teacher is not None:
        fields["teacher"] = teacher.spec
    return fields


def student_options(student: Student) -> dict[str, str]:
    """The RunConfig fields a student object implies (the linear student's gauge and features)."""
    fm = student.feature_model()
    if fm is None:
        return {}
    return {"gauge": "pinned" if fm.rows < student.num_classes else "full", "features": fm.kind}


def _config(config: RunConfig | None, objects: dict[str, Any], overrides: dict[str, Any]) -> RunConfig:
    base = {} if config is None else config.to_dict()
    for key, value in overrides.items():
        if key in objects and str(getattr(value, "value", value)) != str(objects[key]):
            raise ValueError(f"{key} is given by an object ({objects[key]!s}) and as a keyword ({value!s})")
    return RunConfig.from_dict({**base, **overrides, **objects})


def build(config: RunConfig | Task | None = None, student: Student | str | None = None,
          teacher: Teacher | str | None = None, **overrides: Any) -> Setup:
    """Resolve a configuration into its objects.

    Call as `build(RunConfig(...))`, `build(teacher="onehot", gamma=0.1, ...)` (fields of
    `RunConfig`), or with objects, `build(task, student, teacher, gamma=...)` (DESIGN 5); student and
    teacher may also be spec strings there.

    Returns:
        the `Setup`. Raises ValueError naming the parameter for an unknown name or a bad value.
    """
    task_obj = config if isinstance(config, Task) else None
    if not (config is None or task_obj is not None or isinstance(config, RunConfig)):
        raise ValueError(f"config must be a RunConfig, None, or a Task object, got {type(config).__name__}")
    student_obj = student if isinstance(student, Student) else None
    teacher_obj = teacher if isinstance(teacher, Teacher) else None
    if student is not None and student_obj is None:
        overrides["student"] = student
    if teacher is not None and teacher_obj is None:
        overrides["teacher"] = teacher
    cfg = _config(None if task_obj is not None else config, _object_fields(task_obj, student_obj, teacher_obj), overrides)
    task = task_obj if task_obj is not None else synthetic.make_task(cfg.task, standardize=cfg.standardize)
    if student_obj is None:
        student_obj = build_student(cfg.student, task, gauge=cfg.gauge, features=cfg.features, dtype=cfg.dtype)
    if (student_obj.num_classes, student_obj.dim) != (task.num_classes, task.dim):
        raise ValueError(f"student {student_obj.spec!r} has K={student_obj.num_classes}, d={student_obj.dim}; "
                         f"task {cfg.task!r} has K={task.num_classes}, d={task.dim}")
    base = check_task(teacher_obj if teacher_obj is not None else parse_teacher(cfg.teacher), task)
    device = check_device(cfg.device)
    if student_obj.device != device:
        student_obj.to_device(device)
    return Setup(cfg, task, student_obj, with_lam(base, cfg.lam), base, build_optimizer(cfg))
