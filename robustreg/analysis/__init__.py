"""The papers' analyses, on any classifier and any registered attack.

Each analysis is a module of this package with a function that computes it (the Python API) and an
:class:`Analysis` entry in :data:`ANALYSES` that ``robustreg analyze NAME`` runs: its ``configure``
adds the analysis's arguments, its ``run`` returns an :class:`AnalysisOutput` -- report.json (the
source of truth), report.md and PNGs -- which the command writes atomically to ``--out``.
"""

from __future__ import annotations

from .common import ANALYSES, Analysis, AnalysisOutput, figure_png, register_analysis, write_analysis

__all__ = ["ANALYSES", "Analysis", "AnalysisOutput", "figure_png", "register_analysis", "write_analysis"]

# the analyses register themselves on import (the order of ``robustreg analyze --help``)
from . import _registered  # noqa: F401
