"""Small test configurations with ids, shared by the test files (STYLE 7). Append only.

A `Case` names a task, a student and a teacher by their CLI specs; `params` holds anything else a
test needs. Tests select cases by id prefix with `cases_with(prefix)` and parametrise over them
with `ids=case_ids(...)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Case:
    """One configuration: ids are unique and stable (they name the test)."""

    id: str
    task: str = "triangle"
    standardize: bool = False
    student: str = "linear"
    gauge: str = "pinned"
    features: str = "linear"
    teacher: str = "bcp"
    params: dict[str, Any] = field(default_factory=dict)


CASES: list[Case] = []

# ---- theory: sigma^2 closed forms vs general route vs Monte Carlo (tests/test_theory_predictions.py)
THEORY_TEACHERS = ("onehot", "dirichlet:0.5", "dirichlet:5", "dirichlet:50", "additive:0.001", "additive:0.01",
                   "tangent:0.01", "mc:4:dirichlet:5")
for _task in ("triangle", "paper"):
    for _gauge in ("pinned", "full"):
        for _teacher in THEORY_TEACHERS:
            CASES.append(Case(id=f"sigma2-{_task}-{_gauge}-{_teacher}", task=_task, gauge=_gauge, teacher=_teacher))

for _teacher in ("onehot", "additive:0.01", "mc:4:dirichlet:5"):  # a non-linear student (Jacobian route)
    CASES.append(Case(id=f"mlpsigma2-teacher-net-{_teacher}", task="teacher-net", student="mlp:16:tanh",
                      teacher=_teacher))


# ---- every registered law needs examples (tests/contracts/test_laws.py refuses a law without one)
LAW_EXAMPLES: dict[str, list[str]] = {
    "onehot": ["onehot"],
    "bcp": ["bcp"],
    "dirichlet": ["dirichlet:0.5", "dirichlet:5"],
    "additive": ["additive:0.01"],
    "tangent": ["tangent:0.01"],
    "clipped": ["clipped:0.01", "clipped:0.1"],
    "temperature": ["temperature:2", "temperature:0.5"],
    "smoothing": ["smoothing:0.1"],
    "mixture": ["mixture:0.5:bcp", "mixture:0.3:onehot", "mixture:0.5:smoothing:0.2", "mixture:0.5:dirichlet:2",
                "mixture:0.3:mc:4:dirichlet:0.5", "mixture:1:bcp"],
    "mc": ["mc:4:dirichlet:5", "mc:3:onehot", "mc:2:mixture:0.5:onehot", "mc:2:clipped:0.05", "mc:3:bcp"],
}

# ---- every registered student needs examples: (spec, task, gauge, features)
STUDENT_EXAMPLES: dict[str, list[tuple[str, str, str, str]]] = {
    "linear": [("linear", "triangle", "pinned", "linear"), ("linear", "triangle", "full", "linear"),
               ("linear", "hetero", "full", "quadratic")],
    "mlp": [("mlp:6x5:tanh", "teacher-net", "pinned", "linear"), ("mlp:4:relu", "triangle", "pinned", "linear")],
}


def cases_with(prefix: str) -> list[Case]:
    """Cases whose id starts with `prefix`."""
    return [c for c in CASES if c.id.startswith(prefix)]


def case_ids(cases: list[Case]) -> list[str]:
    """The ids of `cases`, for `pytest.mark.parametrize(..., ids=...)`."""
    return [c.id for c in cases]
