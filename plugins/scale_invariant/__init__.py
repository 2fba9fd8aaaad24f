"""Paper 004 (Xu et al., "Scale-Invariant Adversarial Attack for Evaluating and Enhancing Adversarial
Defenses", 2022, arXiv:2201.12527): the SI-PGD attack, the ``logit-scale`` check (:mod:`.check`) and the
paper's four analyses (:mod:`.analyses`: logit-scale, loss-surface, weight-surface, cos-histogram).

The SI defense mechanism of this plugin lives in ``defenses*.py`` and registers through its own hook
implementation imported below.
"""

from __future__ import annotations

import robustreg

from .sipgd import SIPGD

__all__ = ["SIPGD", "robustreg_register_analyses", "robustreg_register_attacks"]


@robustreg.hookimpl
def robustreg_register_attacks(registrar: robustreg.Registrar) -> None:
    """Register si-pgd (in the demo's default attack set)."""
    registrar.add_attack(SIPGD.name, SIPGD, summary=SIPGD.info.summary, demo=True)


@robustreg.hookimpl
def robustreg_register_analyses(registrar) -> None:
    """Register logit-scale, loss-surface, weight-surface and cos-histogram."""
    from . import analyses  # imported when the registry is built, not with the attack's module

    analyses.register(registrar)


from .check import robustreg_register_checks  # noqa: E402, F401
from .defenses import robustreg_register_defenses  # noqa: E402, F401
from .remedy import robustreg_register_remedies  # noqa: E402, F401
