"""What a file read back must hold: the field checks the validators of a resume state and of a report share.

A state or a report.json whose version and fingerprints are right may still be damaged: edited by hand,
cut short by a tool, written by a bug.  Each validator (:mod:`robustreg.evaluation.state_check`,
:mod:`robustreg.evaluation.report_check`, ...) walks its file with these helpers; the first field that is
not what robustreg writes raises :class:`Damage`, whose text names the field and what is wrong
(``cell 'fgsm@0.1': broken holds 40 per-sample values, expected 60``).  The caller, who knows the file
and the flag, turns it into the one line the user sees; nothing read back is used before it passed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["Damage", "described", "field", "fingerprinted", "fraction", "integer", "mapping", "nullable", "number",
           "optional", "per_sample", "required", "row_count", "rows", "text"]


class Damage(ValueError):
    """A field of a file read back that robustreg never writes; the text names it and what is wrong."""


def described(value: Any) -> str:
    """``None``, ``a str ('lenet')``, ``a list``: what was found instead, short."""
    if value is None:
        return "None"
    shown = f" ({value!r})" if isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 40 else ""
    kind = type(value).__name__
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}{shown}"


def field(container: Mapping[str, Any], key: str, where: str) -> Any:
    """``container[key]``; a missing key is a :class:`Damage` naming ``where``."""
    if key not in container:
        raise Damage(f"{where} is missing")
    return container[key]


def required(entry: Mapping[str, Any], key: str, where: str, check: Callable[[Any, str], Any]) -> Any:
    """``check(entry[key], "where: key")`` (``where`` empty: the file's top level, "key"); a missing key is a
    :class:`Damage`."""
    at = f"{where}: {key}" if where else key
    return check(field(entry, key, at), at)


def optional(entry: Mapping[str, Any], key: str, where: str, check: Callable[[Any, str], Any]) -> None:
    """:func:`required` unless the key is absent or None (what a writer leaves out)."""
    if entry.get(key) is not None:
        required(entry, key, where, check)


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Damage(f"{where} is {described(value)}, not a mapping")
    return value


def rows(value: Any, where: str) -> Sequence[Any]:
    """A list (or tuple) of entries."""
    if not isinstance(value, (list, tuple)):
        raise Damage(f"{where} is {described(value)}, not a list")
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Damage(f"{where} is {described(value)}, not a string")
    return value


def number(value: Any, where: str) -> float:
    """An int or a float (not a bool, not NaN-checked: a report may hold None where it says so)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Damage(f"{where} is {described(value)}, not a number")
    return float(value)


def fraction(value: Any, where: str) -> float:
    """A number in [0, 1] (an accuracy)."""
    if not 0.0 <= number(value, where) <= 1.0:
        raise Damage(f"{where} is {value!r}, expected a fraction in [0, 1]")
    return float(value)


def integer(value: Any, where: str, low: int | None = 0) -> int:
    """An int (not a bool) >= ``low`` (None: any)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Damage(f"{where} is {described(value)}, not an integer")
    if low is not None and value < low:
        raise Damage(f"{where} is {value}, expected >= {low}")
    return value


def nullable(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    """``check``, but None passes (a field a writer sets to None when there is nothing to say)."""
    return lambda value, where: None if value is None else check(value, where)


def row_count(count: int) -> str:
    """``1 row``, ``3 rows``."""
    return f"{count} row{'' if count == 1 else 's'}"


def fingerprinted(report: Mapping[str, Any], key: str) -> str:
    """``report[key]`` (a report's ``model``, ``data``): a mapping holding a ``fingerprint`` string."""
    return required(required(report, key, "", mapping), "fingerprint", key, text)


_KINDS = {"bool": (torch.bool,), "float": (torch.float16, torch.bfloat16, torch.float32, torch.float64),
          "int": (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)}


def per_sample(value: Any, where: str, n: int | None, kind: str) -> torch.Tensor:
    """A 1-D tensor of ``n`` values (None: any number) of ``kind`` ("bool", "float" or "int"): one per sample."""
    if not isinstance(value, torch.Tensor):
        raise Damage(f"{where} is {described(value)}, not a tensor")
    if value.dim() != 1:
        raise Damage(f"{where} is a {'x'.join(map(str, value.shape)) or 'scalar'} tensor, expected one value per "
                     f"sample{'' if n is None else f' ({n})'}")
    if n is not None and value.shape[0] != n:
        raise Damage(f"{where} holds {value.shape[0]} per-sample values, expected {n}")
    if value.dtype not in _KINDS[kind]:
        raise Damage(f"{where} holds {value.dtype} values, expected {kind}")
    return value
