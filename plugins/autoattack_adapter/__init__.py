"""AutoAttack adapter: AutoAttack's versions and sub-attacks as entries named ``autoattack:<name>``.

Uses the official ``autoattack`` module when importable, else ``pyautoattack``; neither is imported
until an attack runs (``robustreg list`` never imports them).  Also the ``robustreg autoattack``
command (:mod:`.command`).
"""

from __future__ import annotations

import robustreg

from .attacks import ENTRIES
from .command import robustreg_register_commands

SAME_AS = {"autoattack:standard": {"autoattack": {}}}  # for robustreg compare

__all__ = ["robustreg_register_attacks", "robustreg_register_commands"]


@robustreg.hookimpl
def robustreg_register_attacks(registrar):
    for cls in ENTRIES:
        registrar.add_attack(cls.name, cls, same_as=SAME_AS.get(cls.name))
