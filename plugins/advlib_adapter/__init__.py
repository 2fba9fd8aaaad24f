"""adv-lib adapter: adv-lib's attacks as registry entries named ``advlib:<attack>``.

adv-lib is imported only when one of these attacks runs (``robustreg list`` never imports it).
See :mod:`.adapter` for the pitfalls the adapter hides and :mod:`.entries` for the parameter mapping.
"""

from __future__ import annotations

import robustreg

from .entries import ENTRIES

SAME_AS = {  # for robustreg compare: names that differ from the common ones
    "advlib:apgd": {"apgd-ce": {"loss": "ce"}, "apgd-dlr": {"loss": "dlr"}},
}

__all__ = ["ENTRIES", "robustreg_register_attacks"]


@robustreg.hookimpl
def robustreg_register_attacks(registrar: robustreg.Registrar) -> None:
    """Register every ``advlib:<attack>`` entry (the class itself is the factory)."""
    for cls in ENTRIES:
        registrar.add_attack(cls.name, cls, same_as=SAME_AS.get(cls.name))
