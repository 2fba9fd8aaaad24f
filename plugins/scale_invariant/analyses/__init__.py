"""Paper 004's analyses, each a ``robustreg analyze NAME`` on any model and any registered attack:
logit-scale (Fig. 1), loss-surface (Fig. 3), weight-surface (Fig. 4), cos-histogram (Fig. 5).

Each module computes its analysis (the Python API) and has the ``configure`` / ``run`` pair that
:func:`register` hands to the registry; they are built on the core's analysis machinery
(:mod:`robustreg.analysis`).
"""

from __future__ import annotations

from typing import Any

from . import cos_histogram, logit_scale, loss_surface, weight_surface

__all__ = ["register"]


def register(registrar: Any) -> None:
    """Add the four analyses."""
    for module in (logit_scale, loss_surface, weight_surface, cos_histogram):
        registrar.add_analysis(module.NAME, module.configure, module.run, summary=module.SUMMARY)
