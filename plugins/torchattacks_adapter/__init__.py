"""torchattacks adapter: torchattacks' attacks as registry entries named ``torchattacks:<attack>``.

torchattacks is imported only when one of these attacks runs (``robustreg list`` never imports it).
See :mod:`.entries` for the parameter mapping.
"""

from __future__ import annotations

from typing import Any

import robustreg

from .entries import ENTRIES

SAME_AS: dict[str, dict[str, dict[str, Any]]] = {  # for robustreg compare: names that differ from the common ones
    "torchattacks:pgdl2": {"pgd": {}},
    "torchattacks:apgd": {"apgd-ce": {"loss": "ce"}, "apgd-dlr": {"loss": "dlr"}},
}

__all__ = ["robustreg_register_attacks"]


@robustreg.hookimpl
def robustreg_register_attacks(registrar: robustreg.Registrar) -> None:
    for cls in ENTRIES:
        registrar.add_attack(cls.name, cls, same_as=SAME_AS.get(cls.name))
