"""Claim kinds shown by F7, F8, F10 (convergence thresholds, generalisation, Monte Carlo samples)."""
from __future__ import annotations
