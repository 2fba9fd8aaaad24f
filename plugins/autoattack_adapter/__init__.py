"""AutoAttack adapter: AutoAttack's versions and sub-attacks as entries named ``autoattack:<name>``.

Uses the official ``autoattack`` module when importable, else ``pyautoattack``; neither is imported
until an attack runs (``robustreg list`` never imports them).  Also the ``robustreg autoattack``
command (:mod:`.command`).
"""

from __future__ import annotations

from typing import Any

import robustreg
from robustreg.remedies import RemedyContext

from .attacks import ENTRIES
from .command import robustreg_register_commands

SAME_AS: dict[str, dict[str, dict[str, Any]]] = {"autoattack:standard": {"autoattack": {}}}  # for robustreg compare

__all__ = ["robustreg_register_attacks", "robustreg_register_commands", "robustreg_register_remedies"]


@robustreg.hookimpl
def robustreg_register_attacks(registrar: robustreg.Registrar) -> None:
    for cls in ENTRIES:
        registrar.add_attack(cls.name, cls, same_as=SAME_AS.get(cls.name))


def _square(ctx: RemedyContext) -> None:
    """AutoAttack's Square (score-based: it needs no gradient, so a masking layer cannot hide from it)."""
    ctx.attack("autoattack:square", label="autoattack:square (5000 queries)")


@robustreg.hookimpl
def robustreg_register_remedies(registrar: robustreg.Registrar) -> None:
    registrar.add_remedy("square", _square, answers=("zero-gradients", "unbounded-attack"), cost=5000,
                         summary="AutoAttack's Square, score-based: no gradient to mask")
