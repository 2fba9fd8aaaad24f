"""The adversarial-robustness-toolbox (ART) adapter: ART's evasion attacks as ``art:<attack>`` entries.

Registering imports nothing from ART; an entry imports it when it is built (a missing ART raises a
one-line ImportError naming the package).  See :mod:`._base` for the pitfalls the adapter hides.
"""

from __future__ import annotations

from typing import Any

import robustreg

from .black_box import ArtBoundary, ArtGeoDA, ArtHopSkipJump, ArtSignOPT, ArtSimBA, ArtSquare, ArtZOO
from .white_box import ArtAPGDCE, ArtAPGDDLR, ArtAutoAttack, ArtBIM, ArtFGM, ArtPGD

ENTRIES = (
    ArtFGM, ArtBIM, ArtPGD, ArtAPGDCE, ArtAPGDDLR, ArtAutoAttack,
    ArtSquare, ArtSimBA, ArtZOO,
    ArtHopSkipJump, ArtBoundary, ArtGeoDA, ArtSignOPT,
)

SAME_AS: dict[str, dict[str, dict[str, Any]]] = {"art:fgm": {"fgsm": {}}}  # for robustreg compare: ART calls FGSM "FGM"

__all__ = ["ENTRIES", "robustreg_register_attacks"]


@robustreg.hookimpl
def robustreg_register_attacks(registrar: robustreg.Registrar) -> None:
    """Register every ``art:<attack>`` entry (the class itself is the factory)."""
    for cls in ENTRIES:
        registrar.add_attack(cls.name, cls, same_as=SAME_AS.get(cls.name))
