"""Measurements taken during SGD, behind one protocol (see `base`)."""
from .base import EvalSet, Every, Instrument, LogSpaced, StepContext

__all__ = ["EvalSet", "Every", "Instrument", "LogSpaced", "StepContext"]
