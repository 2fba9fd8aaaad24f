"""Paper 000's analyses, each a ``robustreg analyze NAME`` on any model and any registered attack: transfer
(Tables 4, 7-10), gradient-correlation (Fig. 5), softmax-argument (Figs. 4, 6), label-leaking (sec. 4.2).

Each module computes its analysis (the Python API) and has the ``configure`` / ``run`` pair that
:func:`register` hands to the registry; they are built on the core's analysis machinery
(:mod:`robustreg.analysis`) and on this plugin's own attacks (:mod:`.directions`).
"""

from __future__ import annotations

from typing import Any

from . import gradient_correlation, label_leaking, softmax_argument, transfer

__all__ = ["register"]


def register(registrar: Any) -> None:
    """Add the four analyses (transfer shares its work over torchrun's ranks)."""
    for module in (transfer, gradient_correlation, softmax_argument, label_leaking):
        registrar.add_analysis(module.NAME, module.configure, module.run, summary=module.SUMMARY,
                               distributed=module is transfer)
