"""foolbox adapter: foolbox 3's attacks as registry entries named ``foolbox:<attack>``.

foolbox (and eagerpy) are imported only when one of these attacks runs (``robustreg list`` never
imports them).  See :mod:`.adapter` for the pitfalls the adapter hides and :mod:`.entries` for the
parameter mapping.
"""

from __future__ import annotations

import robustreg

from .entries import ENTRIES

__all__ = ["ENTRIES", "robustreg_register_attacks"]


@robustreg.hookimpl
def robustreg_register_attacks(registrar: robustreg.Registrar) -> None:
    """Register every ``foolbox:<attack>`` entry (the class itself is the factory)."""
    for cls in ENTRIES:
        registrar.add_attack(cls.name, cls)
