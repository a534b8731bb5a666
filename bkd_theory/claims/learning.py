"""Claim kinds shown by F1, F9 (the paper setting: loss noise, accuracy, trained teachers)."""
from __future__ import annotations
