"""Declared parameters: every attack and defense lists its parameters once, here-typed.

A :class:`Param` is one parameter (name, type, default, allowed range or choices, unit, one-line
doc and, for an adapter, the wrapped toolkit's own keyword).  A :class:`ParamSet` is the ordered
declaration of one attack or defense.  Everything that needs parameters reads the declaration:
the Attack and Defense bases validate constructor arguments with :meth:`ParamSet.resolve`,
``robustreg list`` shows them, the CLI coerces ``--param`` text with :meth:`Param.parse`,
``compare`` maps our names to a toolkit's with :meth:`ParamSet.toolkit_kwargs`.

Errors are one line naming the owner (the attack or defense), the argument, the value and what is
allowed.  An unknown name lists close matches (``pgd: unknown parameter 'stepz'; did you mean
'steps'?``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from .errors import UserError, close_matches

__all__ = [
    "TYPES",
    "Param",
    "ParamError",
    "ParamSet",
    "ParamTypeError",
    "UnknownParamError",
    "canonical_name",
    "canonical_names",
    "parse_assignment",
    "parse_value",
]

TYPES = ("int", "float", "bool", "str", "choice")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null", "~")
ALLOW_LARGE = "ROBUSTREG_ALLOW_LARGE"  # set to 1: iteration counts may go above their declared sane_high


class ParamError(UserError):
    """A parameter value outside what its declaration allows (a :class:`~robustreg.errors.UserError`)."""


class ParamTypeError(ParamError, TypeError):
    """A parameter value of the wrong type."""


class UnknownParamError(ParamError, TypeError):
    """A parameter name the declaration does not have (the message lists close matches)."""


def parse_value(text: str) -> Any:
    """Best-effort typed value of undeclared text: bool, None, int, float, a fraction, else the text."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in _NONE:
        return None
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    if "/" in t:
        try:
            return float(Fraction(t))
        except (ValueError, ZeroDivisionError):
            pass
    return t


def parse_assignment(text: str, *, flag: str = "--param") -> tuple[str | None, str, str]:
    """``[OWNER.]KEY=VALUE`` -> ``(owner or None, key, value text)``: the one ``--param`` grammar.

    The owner is everything before the last ``.`` of the key part, so ``autoattack:apgd-ce.n_iter``
    names the owner ``autoattack:apgd-ce``.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ParamError(f"{flag} must be [NAME.]KEY=VALUE, got {text!r}")
    owner, dot, name = key.rpartition(".")
    if dot and not owner or not name:
        raise ParamError(f"{flag} must be [NAME.]KEY=VALUE, got {text!r}")
    return (owner or None), name, value


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    ``type``: one of ``int``, ``float``, ``bool``, ``str``, ``choice``.  ``low`` / ``high``: bounds
    for numbers, inclusive unless ``low_open`` / ``high_open``.  ``choices``: the allowed values
    (``choice``).  ``optional``: None is allowed too.  ``unit``: e.g. ``"pixels [0, 1]"``, ``"logits"``.
    ``toolkit``: the wrapped toolkit's keyword for this parameter (adapters), when it differs.
    ``sane_high``: for an iteration or query count, the most a run is allowed without
    ``ROBUSTREG_ALLOW_LARGE=1`` in the environment (``steps=1e9`` would run for hours without a word).
    """

    name: str
    type: str
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    optional: bool = False
    unit: str = ""
    toolkit: str | None = None
    sane_high: float | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"Param {self.name!r}: type must be one of {', '.join(TYPES)}, got {self.type!r}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"Param {self.name!r}: a choice needs choices")
        if not self.doc:
            raise ValueError(f"Param {self.name!r}: doc must be a non-empty line")
        self.validate(f"declaration of {self.name}", self.default)

    # --- what is allowed ------------------------------------------------------------------------
    def allowed(self) -> str:
        """What the parameter accepts, in words: ``an int >= 1``, ``a number in (0, 1]``, ``one of ce, cw``."""
        if self.type == "bool":
            text = "True or False"
        elif self.type in ("choice",):
            text = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.type == "str":
            text = "a string"
        else:
            text = ("an int" if self.type == "int" else "a number") + self._range()
        return text + (" or None" if self.optional else "")

    def _range(self) -> str:
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return f" in {'(' if self.low_open else '['}{lo:g}, {hi:g}{')' if self.high_open else ']'}"
        if lo is not None:
            return f" {'>' if self.low_open else '>='} {lo:g}"
        if hi is not None:
            return f" {'<' if self.high_open else '<='} {hi:g}"
        return ""

    # --- validation and coercion ----------------------------------------------------------------
    def validate(self, owner: str, value: Any) -> Any:
        """``value`` checked and normalised (ints for ``int``, floats for ``float``); else a ParamError."""
        if value is None and self.optional:
            return None
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            raise self._type_error(owner, value)
        if self.type == "choice":
            for choice in self.choices:  # True == 1, but a bool is no int choice (and vice versa)
                if value == choice and isinstance(value, bool) == isinstance(choice, bool):
                    return choice
            close = close_matches(str(value), [str(c) for c in self.choices], n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParamError(f"{owner}: {self.name} must be {self.allowed()}, got {value!r}{hint}")
        if self.type == "str":
            if isinstance(value, str):
                return value
            raise self._type_error(owner, value)
        return self._number(owner, value)

    def _number(self, owner: str, value: Any) -> int | float:
        value = self._plain(value)
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if self.type == "int" and not is_int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self._type_error(owner, value)
        elif self.type == "float" and not (is_int or isinstance(value, float)):
            raise self._type_error(owner, value)
        number: int | float = int(value) if self.type == "int" else float(value)
        if isinstance(number, float) and math.isnan(number):
            raise ParamError(f"{owner}: {self.name} must be {self.allowed()}, got nan")
        lo, hi = self.low, self.high
        below = lo is not None and (number <= lo if self.low_open else number < lo)
        above = hi is not None and (number >= hi if self.high_open else number > hi)
        if below or above:
            hint = ""
            if self.unit.startswith("pixels") and isinstance(value, (int, float)) and 1 < value <= 255:
                hint = f"; did you mean {value:g}/255?"
            raise ParamError(f"{owner}: {self.name} must be {self.allowed()}, got {value!r}{hint}")
        if self.sane_high is not None and number > self.sane_high and not _large_allowed():
            raise ParamError(f"{owner}: {self.name} must be at most {self.sane_high:g} (the declared sane maximum; "
                             f"set {ALLOW_LARGE}=1 to go above it), got {value!r}")
        return number

    def _plain(self, value: Any) -> Any:
        """A 0-d tensor or numpy number as the Python number it holds; for a pixel-unit float, text like
        ``"8/255"`` read as the command line reads it.  Anything else unchanged (for the type check)."""
        if isinstance(value, str) and self.type == "float" and self.unit.startswith("pixels"):
            parsed = parse_value(value)
            return parsed if isinstance(parsed, (int, float)) and not isinstance(parsed, bool) else value
        item, dtype = getattr(value, "item", None), str(getattr(value, "dtype", ""))
        numel = getattr(value, "numel", None) or getattr(value, "size", None)
        count = numel() if callable(numel) else numel
        if callable(item) and count == 1 and getattr(value, "ndim", 0) == 0 and ("int" in dtype or "float" in dtype):
            return item()
        return value

    def _type_error(self, owner: str, value: Any) -> ParamTypeError:
        return ParamTypeError(f"{owner}: {self.name} must be {self.allowed()}, got {value!r} "
                              f"({type(value).__name__})")

    def parse(self, owner: str, text: str) -> Any:
        """The typed value of command-line ``text`` (``8/255`` for numbers, ``true``/``no`` for bools)."""
        t = text.strip()
        if self.optional and t.lower() in _NONE:
            return None
        value: Any = t
        if self.type == "bool":
            low = t.lower()
            if low not in _TRUE + _FALSE:
                raise ParamTypeError(f"{owner}: {self.name} must be true or false, got {text!r}")
            value = low in _TRUE
        elif self.type == "int":
            value = _exact_int(t)
            if value is None:
                raise ParamTypeError(f"{owner}: {self.name} must be {self.allowed()}, got {text!r}")
        elif self.type == "float":
            value = parse_value(t)
            if isinstance(value, str) or isinstance(value, bool) or value is None:
                raise ParamTypeError(f"{owner}: {self.name} must be {self.allowed()}, got {text!r}")
        elif self.type == "choice":
            by_text = {str(c).lower(): c for c in self.choices}
            value = by_text.get(t.lower(), t)
        return self.validate(owner, value)

    def to_json(self) -> dict[str, Any]:
        """The declaration as JSON-ready values (``robustreg list --json``)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "default": _jsonable(self.default),
                               "doc": self.doc, "allowed": self.allowed()}
        for key in ("low", "high", "unit", "toolkit", "sane_high"):
            value = getattr(self, key)
            if value not in (None, ""):
                out[key] = _jsonable(value)
        if self.low is not None:
            out["low_open"] = self.low_open
        if self.high is not None:
            out["high_open"] = self.high_open
        if self.choices:
            out["choices"] = [_jsonable(c) for c in self.choices]
        out["optional"] = self.optional
        return out


def _large_allowed() -> bool:
    return os.environ.get(ALLOW_LARGE, "") not in ("", "0")


def _exact_int(text: str) -> int | None:
    """The int that ``text`` names exactly (``40``, ``1e3``, ``100/2``); None when it names no whole number
    (``2.5``, ``abc``) or one past 2**63 (``1e400``: read exactly, a float would silently round it)."""
    try:
        if "/" in text:
            number = Fraction(text)
        else:
            dec = Decimal(text)
            # a finite value below 2**63 has at most 19 digits before the point: a larger adjusted exponent is
            # out of range, and an exponent far below -19 cannot name a whole number (Fraction would build 10**n)
            if not dec.is_finite() or dec.adjusted() > 19 or (dec != 0 and dec.adjusted() < -1):
                return None
            number = Fraction(dec)
    except (ValueError, ZeroDivisionError, InvalidOperation, OverflowError):
        return None
    if number.denominator != 1 or abs(number.numerator) >= 2**63:
        return None
    return int(number)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class ParamSet(Sequence[Param]):
    """The ordered, immutable declaration of one attack's or defense's parameters."""

    def __init__(self, params: Iterable[Param] = ()) -> None:
        self._params: tuple[Param, ...] = tuple(params)
        names = [p.name for p in self._params]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"parameters declared twice: {', '.join(dup)}")
        self._by_name = {p.name: p for p in self._params}

    # --- Sequence ---------------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            return self._by_name[index]
        return self._params[index]

    def __len__(self) -> int:
        return len(self._params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self._params)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __add__(self, other: Iterable[Param]) -> ParamSet:
        return ParamSet([*self._params, *other])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParamSet) and self._params == other._params

    def __hash__(self) -> int:
        return hash(self._params)

    def __repr__(self) -> str:
        return f"ParamSet({', '.join(p.name for p in self._params)})"

    # --- derived declarations ---------------------------------------------------------------------
    def names(self) -> list[str]:
        return [p.name for p in self._params]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self._params}

    def with_defaults(self, **defaults: Any) -> ParamSet:
        """The same declaration with other defaults (each checked against its parameter)."""
        self._check_known("with_defaults", defaults)
        return ParamSet(replace(p, default=defaults[p.name]) if p.name in defaults else p for p in self._params)

    def without(self, *names: str) -> ParamSet:
        """The declaration less ``names`` (a subclass that fixes them)."""
        self._check_known("without", dict.fromkeys(names))
        return ParamSet(p for p in self._params if p.name not in names)

    def replaced(self, *params: Param) -> ParamSet:
        """The declaration with the same-named parameters swapped for ``params``."""
        new = {p.name: p for p in params}
        self._check_known("replaced", new)
        return ParamSet(new.get(p.name, p) for p in self._params)

    # --- use --------------------------------------------------------------------------------------
    def unknown_error(self, owner: str, name: str) -> UnknownParamError:
        close = close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        allowed = ", ".join(self.names()) or "none"
        return UnknownParamError(f"{owner}: unknown parameter {name!r}{hint} (allowed: {allowed})")

    def _check_known(self, owner: str, values: Mapping[str, Any]) -> None:
        for name in values:
            if name not in self._by_name:
                raise self.unknown_error(owner, name)

    def resolve(self, owner: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared parameter's value: ``values`` validated, defaults for the rest.

        Raises :class:`UnknownParamError` (a TypeError) for a name not declared, and
        :class:`ParamError` / :class:`ParamTypeError` for a value outside the declaration.
        """
        self._check_known(owner, values)
        return {p.name: p.validate(owner, values[p.name]) if p.name in values else p.default for p in self._params}

    def parse(self, owner: str, texts: Mapping[str, str]) -> dict[str, Any]:
        """Typed values of command-line texts (``{"steps": "40"}`` -> ``{"steps": 40}``)."""
        self._check_known(owner, texts)
        return {name: self._by_name[name].parse(owner, text) for name, text in texts.items()}

    def toolkit_kwargs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` (our names) under the toolkit's names, for parameters that declare ``toolkit``."""
        return {(self._by_name[k].toolkit or k): v for k, v in values.items() if k in self._by_name}

    def to_json(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in self._params]

    def doc_lines(self) -> list[str]:
        """One ``- name (allowed, default d): doc`` line per parameter (generated docstrings, --help)."""
        return [f"- ``{p.name}`` ({p.allowed()}; default {p.default!r}{', ' + p.unit if p.unit else ''}): {p.doc}"
                for p in self._params]


# --- the toolkits' names of a parameter, read as aliases --------------------------------------------
def canonical_name(declared: ParamSet, owner: str, name: str,
                   aliases: Mapping[str, Iterable[str]] | None = None) -> str:
    """The declared parameter ``name`` stands for: itself when declared; else the one parameter whose
    toolkit name it is (``Param.toolkit`` in ``declared`` first, then ``aliases``: toolkit name -> declared
    names, what the registry's other entries declare, so ``pgd``'s ``alpha`` is a toolkit's name of its
    ``step_size``); else ``name`` unchanged (the declaration's unknown-name error follows).  A name that is
    the toolkit name of two declared parameters is a ParamError naming both."""
    if name in declared:
        return name
    found = sorted({p.name for p in declared if p.toolkit == name})
    if not found and aliases is not None:
        found = sorted(set(aliases.get(name, ())) & set(declared.names()))
    if len(found) > 1:
        raise ParamError(f"{owner}: parameter {name!r} is ambiguous: it is a toolkit's name of both "
                         f"{found[0]!r} and {found[1]!r}; give one of those")
    return found[0] if found else name


def canonical_names(declared: ParamSet, owner: str, values: Mapping[str, Any],
                    aliases: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
    """``values`` with every key under its declared name (:func:`canonical_name`); a parameter given under
    two names (``alpha`` and ``step_size``) is a ParamError."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}  # declared name -> the name it was given under
    for key, value in values.items():
        name = canonical_name(declared, owner, key, aliases)
        if name in out:
            raise ParamError(f"{owner}: {given[name]!r} and {key!r} are the same parameter ({name}); give it once")
        out[name], given[name] = value, key
    return out
