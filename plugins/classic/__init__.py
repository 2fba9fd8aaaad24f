"""Classic gradient attacks: FGSM, PGD (linf, l2) and its C&W-margin and DLR variants.

The classic adversarial-training defenses of this plugin live in ``defenses*.py`` and register
through their own hook implementation imported below.
"""

from __future__ import annotations

import robustreg

from .fgsm import FGSM
from .pgd import PGD, PGDCW, PGDDLR

__all__ = ["FGSM", "PGD", "PGDCW", "PGDDLR", "robustreg_register_attacks"]


@robustreg.hookimpl
def robustreg_register_attacks(registrar) -> None:
    """Register fgsm, pgd, pgd-cw and pgd-dlr."""
    for cls in (FGSM, PGD, PGDCW, PGDDLR):
        registrar.add_attack(cls.name, cls, summary=cls.info.summary)
from .defenses import robustreg_register_defenses  # noqa: E402, F401
