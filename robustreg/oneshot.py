"""One call from a name to a ready attack: ``robustreg.attack("pgd", eps=8/255, norm="Linf", steps=10)``.

``robustreg.attack`` stays the module of the Attack contract (``from robustreg.attack import Attack``
works as before); :class:`CallableModule` makes that module callable as :func:`make_attack`, so the one
name serves both (``robustreg/__init__.py`` sets it).
"""

from __future__ import annotations

import types
from typing import Any

from .attack import Attack
from .registry import Registry
from .threat import ThreatModel, parse_eps

__all__ = ["CallableModule", "make_attack"]


def make_attack(name: str, eps: float | str = 8 / 255, norm: Any = "linf", *, registry: Any = None,
                **params: Any) -> Attack:
    """The registered attack ``name`` for ``ThreatModel(norm, eps)``, ready as ``atk(model, x, y) -> x_adv``
    (``atk.run(model, x, y)`` gives the :class:`~robustreg.AttackResult`).

    ``eps``: a number in [0, 1] pixel units or text such as ``"8/255"``; ``norm``: any spelling
    (``"Linf"``, ``np.inf``, ``"L2"``, ...); ``params``: the attack's declared parameters, a toolkit's own
    names (``alpha``) included; ``registry``: a :class:`robustreg.Registry` to reuse (default: a new one).
    An unknown name or parameter is one line with close matches.

    Example::

        atk = robustreg.attack("pgd", eps="8/255", norm="Linf", steps=10)
        x_adv = atk(model, x, y)
    """
    registry = registry if registry is not None else Registry.create()
    value = parse_eps(eps) if isinstance(eps, str) else eps
    return registry.build_attack(name, ThreatModel(norm, value), **params)


class CallableModule(types.ModuleType):
    """A module that is also :func:`make_attack` when called (the class of ``robustreg.attack``)."""

    def __call__(self, name: str, eps: float | str = 8 / 255, norm: Any = "linf", **kwargs: Any) -> Attack:
        return make_attack(name, eps, norm, **kwargs)
