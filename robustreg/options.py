"""A front-end's options as one frozen dataclass: ``f(..., config=None, **options)``.

``evaluate``, ``compare``, the curve and the analyses take their options the same way: a config dataclass
(validated once, in its ``__post_init__``) and keyword arguments that replace its fields.  The keywords are
the older calls' parameters, so those calls keep working; an unknown one is a TypeError, as Python says it
for a function's unknown keyword.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

__all__ = ["flag", "positive_int", "seed_value", "with_options"]

C = TypeVar("C")


def with_options(cls: type[C], config: C | None, options: Mapping[str, Any], *, caller: str) -> C:
    """``config`` (default: ``cls()``) with ``options`` replacing its fields, validated once by ``cls``.

    ``caller``: the function's name for the errors (``compare()``).  ``config`` of another type, or an
    option that is no field of ``cls``, is a TypeError naming it."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    if config is not None and not isinstance(config, cls):
        raise TypeError(f"{caller} config must be a {cls.__name__}, got {type(config).__name__}")
    unknown = sorted(set(options) - {f.name for f in fields(cls)})
    if unknown:
        raise TypeError(f"{caller} got unexpected keyword argument(s): {', '.join(unknown)} "
                        f"(options: {', '.join(f.name for f in fields(cls))})")
    base = config if config is not None else cls()
    return replace(base, **options) if options else base


# --- the checks the options of every front-end share (one-line ValueErrors naming the option) ---------------
def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an int >= 1 (not a bool), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def flag(name: str, value: Any) -> bool:
    """``value`` if it is True or False, else a ValueError naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def seed_value(name: str, value: Any, *, optional: bool = True) -> int | None:
    """``value`` if it is an int (or None when ``optional``: nondeterministic), else a ValueError naming ``name``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int{' or None' if optional else ''}, got {value!r}")
    return value
