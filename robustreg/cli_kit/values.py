"""Values as the command line spells them: ``--eps`` lists (``8/255``, ``--eps-scale``) and ``--param [NAME.]KEY=VALUE``
typed by each entry's declared parameters (the toolkits' names read as robustreg's)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UsageError
from ..params import ParamError, ParamSet, canonical_name, parse_assignment, parse_value
from ..threat import parse_eps


def eps_list(text: str, scale: float | None = None, *, flag: str = "--eps") -> list[float]:
    """``"8/255,0.1"`` -> budgets in [0, 1] units; ``scale`` divides plain numbers (not fractions).

    ``scale`` (``--eps-scale``) must be a finite number > 0: ``inf`` would turn every budget into 0.
    """
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise UsageError(f"--eps-scale must be a finite number > 0, got {scale}")
    values = []
    for part in text.split(","):
        if part.strip():
            try:
                values.append(parse_eps(part, scale=None if "/" in part else scale))
            except ValueError as exc:
                raise UsageError(f"{flag} {text!r}: {exc}") from None
    if not values:
        raise UsageError(f"{flag} must list at least one value, got {text!r}")
    return values


def _typed(params: ParamSet | None, owner: str, key: str, text: str) -> Any:
    if params is None:  # nothing to check against (e.g. compare without a native attack): a best guess
        return parse_value(text)
    if key in params:
        return params[key].parse(owner, text)
    raise params.unknown_error(owner, key)


def _declared_name(params: ParamSet | None, owner: str, key: str, aliases: Mapping[str, Any] | None) -> str:
    """``key`` under its declared name: a toolkit's name (``alpha``) is read as ours (``step_size``)."""

    return key if params is None else canonical_name(params, owner, key, aliases)


def param_values(texts: Iterable[str], owners: Mapping[str, ParamSet | None], *, where: str,
                 flag: str = "--param", aliases: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``--param [NAME.]KEY=VALUE`` texts -> ``{owner: {key: typed value}}``.

    The grammar is :func:`robustreg.params.parse_assignment`; each value is coerced by its owner's
    declared :meth:`robustreg.Param.parse` (an unknown key gets the declaration's close matches).
    ``owners``: the declaration of every name a text may give (None: none to check against, values
    read by :func:`robustreg.params.parse_value`); a text without ``NAME.`` belongs to the only owner
    (it must name one when there are several).  ``where``: the flag that chose the
    owners, for the error when a text names another (``--attacks``).  A key may be a toolkit's name of a
    declared parameter (``pgd.alpha`` is ``pgd.step_size``; ``aliases``: :meth:`robustreg.Registry.param_aliases`,
    besides the owner's own ``Param.toolkit`` names); the value is keyed by the declared name.  Every error is a
    UsageError.
    """
    out: dict[str, dict[str, Any]] = {}
    for text in texts:
        try:
            owner, key, value = parse_assignment(text, flag=flag)
            if owner is None and len(owners) == 1:
                owner = next(iter(owners))
            if owner is None:
                raise UsageError(f"{flag} {text!r} must name its owner, NAME.KEY=VALUE, with NAME one of "
                                 f"{', '.join(owners)}")
            if owner not in owners:
                raise UsageError(f"{flag} {text!r}: {owner!r} is not in {where} ({', '.join(owners)})")
            key = _declared_name(owners[owner], owner, key, aliases)
            if key in out.get(owner, {}):
                raise UsageError(f"{flag} {text!r}: {owner}.{key} is already given (under this or another name)")
            out.setdefault(owner, {})[key] = _typed(owners[owner], owner, key, value)
        except ParamError as exc:
            raise UsageError(f"{flag} {text!r}: {exc}") from None
    return out
