"""Paper 004's SI defenses (``at-si``, ``trades-si``, ...) and the hypersphere-embedding defenses.

Each ``<defense>-si`` entry is the registered defense ``<defense>`` (the classic plugin's) with
the :class:`~.mechanism.SIMechanism` composed onto it through the :class:`robustreg.Defense`
extension points: SI-PGD adversarial examples, plus ``beta * CE(s * (cos(theta) - m * onehot(y)),
y)`` on them in the training objective (paper 004 section 4.3, Table 1 right column; s = 15,
m = 0.2, beta = 0.2, section 5.2).  This plugin imports none of the classic plugin's modules: the
entries are registered once every plugin has registered (``registrar.defer``), from the base
entries found through the registry being built (``registrar.defense(name)``).  The declaration of
``<defense>-si`` is the base's plus the mechanism's; building it builds the base's class (the same
type) with ``mechanisms=[SIMechanism(...)]``.  When a base is not registered (the classic plugin
disabled or broken), its ``-si`` entry stays listed and building it raises an UnknownNameError
that says so.

The inner attack's start (a documented difference): each ``<defense>-si`` keeps its base's start.
TRADES-SI and MART-SI therefore start SI-PGD from x + 0.001 N(0, I) (Zhang et al.'s and Wang et al.'s
released code, where the KL has no gradient at x' = x), while SI-PGD as paper 004 writes it (eq. 8,
after eq. 2) starts from x + U(-eps, eps), as AT-SI's and ALP-SI's inner attacks do here.  Paper 004
does not say which start its SI defenses use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robustreg import Defense, DefenseInfo, DefenseSpec, Registrar, UnknownNameError, hookimpl

from .defense_he import HEAT, TRADESHE
from .mechanism import SIMechanism

__all__ = ["SI_BASES", "SI_DEFAULTS", "register_si_defenses", "robustreg_register_defenses", "si_factory"]

# (base defense name, single-step?, the paper 004 table that reports it)
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
SI_DEFAULTS = {"si": True, "s": 15.0, "m": 0.2, "beta": 0.2}


def si_factory(name: str, base: DefenseSpec) -> Callable[..., Defense]:
    """A factory building ``base``'s defense with the SI mechanism composed onto it (the entry validates)."""
    own = SIMechanism.params.names()

    def factory(**params: Any) -> Defense:
        mechanism = SIMechanism(owner=name, **{key: params.pop(key) for key in own if key in params})
        return base.factory(mechanisms=[mechanism], **{**base.defaults, **params})

    _describe(factory, name, f"{base.name} with paper 004's scale-invariant mechanism: SI-PGD examples and "
                             "beta * CE^m(s cos theta) added; the base's parameters plus si, s, m, beta.")
    return factory


def _unavailable(name: str, base: str, error: UnknownNameError) -> Callable[..., Defense]:
    def factory(**params: Any) -> Defense:
        raise UnknownNameError(f"{name} composes the SI mechanism onto the defense {base!r} of the classic plugin, "
                               f"which is not registered (is the 'classic' plugin disabled or broken?): {error}")

    _describe(factory, name, f"unavailable: the defense {base!r} is not registered.")
    return factory


def _describe(factory: Callable[..., Defense], name: str, doc: str) -> None:
    factory.__name__ = factory.__qualname__ = name.replace("-", "_")
    factory.__doc__ = doc


def register_si_defenses(registrar: Registrar) -> None:
    """Register ``<base>-si`` for every base of :data:`SI_BASES` (run once every plugin has registered)."""
    for base_name, single_step, table in SI_BASES:
        name = f"{base_name}-si"
        info = DefenseInfo(
            source=f"paper 004 (Xu et al., scale-invariant defense, section 4.3, {table}) on top of {base_name}",
            paper="004",
            single_step=single_step,
            needs_embedding=True,
            summary=f"{base_name} + SI mechanism (SI-PGD examples, beta * CE(s (cos theta - m onehot)))",
        )
        try:
            base = registrar.defense(base_name)
        except UnknownNameError as exc:
            factory, params = _unavailable(name, base_name, exc), SIMechanism.params
        else:
            factory, params = si_factory(name, base), base.params + SIMechanism.params
        registrar.add_defense(name, factory, info=info, params=params, defaults=SI_DEFAULTS)


@hookimpl
def robustreg_register_defenses(registrar: Registrar) -> None:
    """Register he and trades-he; at-si, trades-si, alp-si, mart-si, free-at-si, rfgsm-at-si, gat-si and
    grad-align-si once every plugin has registered."""
    for cls in (HEAT, TRADESHE):
        registrar.add_defense(cls.name, cls, info=cls.info)
    registrar.defer(register_si_defenses)
