"""Claim kinds shown by F2-F5 (propositions and bound curves beyond the library's defaults)."""
from __future__ import annotations
