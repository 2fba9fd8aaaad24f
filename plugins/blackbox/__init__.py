"""Black-box attacks used by paper 004 (section 5.4.2): score-based SPSA and hard-label RayS."""

from __future__ import annotations

from robustreg import Registrar, hookimpl

from .rays import RayS
from .spsa import SPSA

__all__ = ["SPSA", "RayS", "robustreg_register_attacks"]


@hookimpl
def robustreg_register_attacks(registrar: Registrar) -> None:
    """Register ``spsa`` and ``rays``."""
    registrar.add_attack(SPSA.name, SPSA)
    registrar.add_attack(RayS.name, RayS)
