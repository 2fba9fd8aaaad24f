"""Minimal-norm attacks: FMN (Pintor et al. 2021; linf, l2, l1) and DDN (Rony et al. 2019; l2).

They declare ``AttackInfo(minimal_norm=True)``: per sample they return the smallest adversarial
perturbation they found, whatever eps is; ``robustreg curve`` turns one run into the robust accuracy at
every eps (docs/minimal-norm.md; the command is :mod:`.curve`, registered here).  Not in the demo (a
fixed-eps table is not what they are for).
"""

from __future__ import annotations

from robustreg import Registrar, hookimpl

from . import curve
from .attacks import DDN, FMN

__all__ = ["DDN", "FMN", "robustreg_register_attacks", "robustreg_register_commands"]


@hookimpl
def robustreg_register_attacks(registrar: Registrar) -> None:
    """Register ``fmn`` and ``ddn``."""
    for cls in (FMN, DDN):
        registrar.add_attack(cls.name, cls, summary=cls.info.summary)


@hookimpl
def robustreg_register_commands(registrar) -> None:
    """Register ``robustreg curve``."""
    registrar.add_command("curve", curve.configure, curve.run, help=curve.HELP)
