"""Classic gradient attacks (FGSM, PGD linf/l2 and its C&W-margin and DLR variants, APGD), defenses, and
the remedies built on them that ``--adaptive`` runs when a check warns (``remedies.py``).

The defenses (paper 004 Table 1, left column) live in ``defenses*.py``, plain training in
``standard.py``; each module registers through its own hook implementation, imported here.
"""

from __future__ import annotations

import robustreg

from .apgd import APGD
from .defenses import robustreg_register_defenses  # noqa: F401
from .fgsm import FGSM
from .pgd import PGD, PGDCW, PGDDLR
from .remedies import robustreg_register_remedies  # noqa: F401
from .standard import register_standard  # noqa: F401

__all__ = ["APGD", "FGSM", "PGD", "PGDCW", "PGDDLR", "robustreg_register_attacks"]


@robustreg.hookimpl
def robustreg_register_attacks(registrar: robustreg.Registrar) -> None:
    """Register fgsm, pgd, pgd-cw, pgd-dlr (all but pgd-dlr in the demo's default attack set) and apgd
    (the native row of ``compare --attack apgd-ce`` / ``apgd-dlr``)."""
    for cls in (FGSM, PGD, PGDCW, PGDDLR):
        registrar.add_attack(cls.name, cls, summary=cls.info.summary, demo=cls is not PGDDLR)
    # AutoAttack's APGD, native; compare's apgd-ce / apgd-dlr rows run it with that loss
    registrar.add_attack(APGD.name, APGD, summary=APGD.info.summary,
                         same_as={"apgd-ce": {"loss": "ce"}, "apgd-dlr": {"loss": "dlr"}})
