"""Paper 000 (Na et al., "Cascade Adversarial Machine Learning Regularized with a Unified Embedding",
2018, arXiv:1708.02582): the attacks step_ll, step_FGSM, iter_FGSM, iter_ll; the defenses kurakin,
bidirectional, pivot and cascade; the ``cascade-store`` command; the paper's four analyses
(:mod:`.analyses`: transfer, gradient-correlation, softmax-argument, label-leaking).
"""

from __future__ import annotations

import robustreg

from . import command
from .attacks import IterFGSM, IterLL, StepFGSM, StepLL
from .defenses import Bidirectional, Cascade, Kurakin, Pivot
from .store import CascadeStore, build_cascade_store, load_cascade_store

__all__ = [
    "Bidirectional",
    "Cascade",
    "CascadeStore",
    "IterFGSM",
    "IterLL",
    "Kurakin",
    "Pivot",
    "StepFGSM",
    "StepLL",
    "build_cascade_store",
    "load_cascade_store",
    "robustreg_register_analyses",
    "robustreg_register_attacks",
    "robustreg_register_commands",
    "robustreg_register_defenses",
]


@robustreg.hookimpl
def robustreg_register_attacks(registrar) -> None:
    """Register step-ll, step-fgsm, iter-fgsm and iter-ll."""
    for cls in (StepLL, StepFGSM, IterFGSM, IterLL):
        registrar.add_attack(cls.name, cls, summary=cls.info.summary)


@robustreg.hookimpl
def robustreg_register_defenses(registrar) -> None:
    """Register kurakin, bidirectional, pivot and cascade."""
    for cls in (Kurakin, Bidirectional, Pivot, Cascade):
        registrar.add_defense(cls.name, cls, summary=cls.info.summary)


@robustreg.hookimpl
def robustreg_register_commands(registrar) -> None:
    """Register the ``cascade-store`` command."""
    registrar.add_command("cascade-store", command.configure, command.run,
                          help="craft iter_FGSM images of a source network once and save them for cascade training")


@robustreg.hookimpl
def robustreg_register_analyses(registrar) -> None:
    """Register transfer, gradient-correlation, softmax-argument and label-leaking."""
    from . import analyses  # imported when the registry is built, not with the attacks' module

    analyses.register(registrar)
