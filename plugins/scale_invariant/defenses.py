"""Paper 004's SI defenses (``at-si``, ``trades-si``, ...) and the hypersphere-embedding defenses.

The SI mechanism (paper 004 section 4.3, Table 1 right column: SI-PGD adversarial examples, plus
``beta * CE(s * (cos(theta) - m * onehot(y)), y)`` on them in the training objective) is an option
``si=True`` of every classic defense; its three lines of math sit on top of :func:`robustreg.embed`
inside the classic plugin.  This plugin may not import the classic plugin's modules, so each
``<defense>-si`` entry is a factory that, when built, looks ``<defense>`` up in a fresh
``robustreg.Registry.create()`` and builds it with ``si=True`` and the given parameters (defaults
s = 15, m = 0.2, beta = 0.2, paper 004 section 5.2).  Disabling the classic plugin therefore makes
the ``*-si`` entries fail to build, with a message that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robustreg import Defense, DefenseInfo, Registry, UnknownNameError, hookimpl

from .defense_he import HEAT, TRADESHE

__all__ = ["SI_BASES", "robustreg_register_defenses", "si_factory"]

# (classic name, single-step?, the paper 004 table that reports it)
SI_BASES: tuple[tuple[str, bool, str], ...] = (
    ("at", False, "Table 6"),
    ("trades", False, "Tables 2-7, 10"),
    ("alp", False, "Tables 6-7"),
    ("mart", False, "Tables 6-7"),
    ("free-at", True, "Table 8"),
    ("rfgsm-at", True, "Table 8"),
    ("gat", True, "Table 8"),
    ("grad-align", True, "Table 8"),
)


def si_factory(base: str) -> Callable[..., Defense]:
    """A factory building the classic defense ``base`` with ``si=True`` through a fresh registry."""

    def factory(**params: Any) -> Defense:
        si = params.pop("si", True)
        if si is not True:
            raise ValueError(f"{base}-si always uses the SI mechanism, got si={si!r}; build {base!r} for the plain one")
        try:
            spec = Registry.create().defense(base)
        except UnknownNameError as exc:
            raise UnknownNameError(
                f"{base}-si builds the classic plugin's defense {base!r} with si=True, but it is not registered "
                f"(is the 'classic' plugin disabled or broken?): {exc}"
            ) from None
        return spec.build(si=True, **params)

    factory.__name__ = f"{base.replace('-', '_')}_si"
    factory.__qualname__ = factory.__name__
    factory.__doc__ = (
        f"{base} with paper 004's scale-invariant mechanism: SI-PGD examples and beta * CE^m(s cos theta) added.\n\n"
        f"Builds the classic {base!r} with si=True; takes the same parameters (s=15, m=0.2, beta=0.2 by default)."
    )
    return factory


@hookimpl
def robustreg_register_defenses(registrar) -> None:
    """Register at-si, trades-si, alp-si, mart-si, free-at-si, rfgsm-at-si, gat-si, grad-align-si, he, trades-he."""
    for base, single_step, table in SI_BASES:
        info = DefenseInfo(
            source=f"paper 004 (Xu et al., scale-invariant defense, section 4.3, {table}) on top of {base}",
            paper="004",
            single_step=single_step,
            needs_embedding=True,
            summary=f"{base} + SI mechanism (SI-PGD examples, beta * CE(s (cos theta - m onehot)))",
        )
        registrar.add_defense(f"{base}-si", si_factory(base), info=info,
                              defaults={"si": True, "s": 15.0, "m": 0.2, "beta": 0.2})
    for cls in (HEAT, TRADESHE):
        registrar.add_defense(cls.name, cls, info=cls.info)
