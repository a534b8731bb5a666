"""bkd_theory: SGD-based knowledge distillation with Bayesian teachers, checked where the Bayes
class probabilities are known exactly.

Data flows one way: synthetic task -> teacher -> SGD loop -> instruments -> theory -> figures.
"""
from __future__ import annotations

__version__ = "0.1.0"
