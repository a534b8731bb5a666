"""Teachers (DESIGN 2.2, 2.10): ONE protocol for target laws, composites and teachers of x.

- `Teacher` (`base`): the protocol, `sample(p, y, rng, x=x)`, `mean`, `cov`, `label_cross_cov`,
  `cov_form`, and the law hooks `_sample(p, y, rng)`, `_cov(p)`, `_mean(p)`,
  `_label_cross_cov(p)`: the public extension points of a user's own law.
- The laws (`laws`): onehot, bcp, dirichlet, additive, tangent, clipped, temperature, smoothing.
- Composites (`composite`): `Mixture` (the KD objective, E20), `MC` (S teacher samples, E9) and
  `with_lam`, the one place where a run's lam wraps a teacher.
- `FunctionTeacher(fn)` (`function`): any fixed function p~(x) is a teacher; trained networks
  (`trained`: deterministic, Brier, temperature-scaled, ensemble, MC dropout, Laplace, VI `vi`) are
  function teachers, measured against the true p by `quality`, fitted in-sample, cross-fitted or
  out-of-sample by `fitting`, and sampled per visit by `pervisit` (E24).
- `TargetSource` (`sources`): fresh or frozen targets of a finite training set.

Specs nest ("mc:4:dirichlet:5", "mixture:0.3:mc:4:dirichlet:0.5"); `str(teacher)` is its spec and
`parse_teacher(str(teacher)) == teacher` for every registered law. `LAWS` lists them.
"""
from __future__ import annotations

from .base import UNIT_FORMS, CovForm, Teacher, check_p, check_x, check_y, label_cov, unit_cov, zeros_cov
from .registry import LAWS, MAX_DEPTH, parse_teacher, register_law
from .laws import BCP, Additive, AdditiveTangent, Clipped, Dirichlet, OneHot, Smoothing, Temperature
from .composite import MC, Mixture, with_lam
from .function import FunctionTeacher
from .sources import TargetSource

__all__ = [
    "BCP", "LAWS", "MAX_DEPTH", "MC", "UNIT_FORMS", "Additive", "AdditiveTangent", "Clipped", "CovForm", "Dirichlet",
    "FunctionTeacher", "Mixture", "OneHot", "Smoothing", "TargetSource", "Teacher", "Temperature", "check_p",
    "check_x", "check_y", "label_cov", "parse_teacher", "register_law", "unit_cov", "with_lam", "zeros_cov",
]
