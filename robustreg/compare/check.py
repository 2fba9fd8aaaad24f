"""What a finished ``compare`` report.json must hold before it is trusted as "report already there".

:func:`check_comparison_report` walks what :func:`robustreg.compare.compare` writes and what its
renderers (:mod:`robustreg.compare.render`) and the command's identity read: the attack, eps, norm,
n, the clean accuracy, the model's and data's fingerprints, one ``results`` row per toolkit (each named
once), the agreement, the noise and the disagreements.  The first field that is wrong raises
:class:`~robustreg.readback.Damage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..readback import (
    Damage,
    field,
    fingerprinted,
    fraction,
    integer,
    mapping,
    nullable,
    number,
    optional,
    required,
    rows,
    text,
)

__all__ = ["check_comparison_report"]

_MEASURES = ("seconds", "relative_seconds", "forwards", "backwards", "max_perturbation", "mean_queries")


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise Damage(f"{where} is {value!r}, not true or false")
    return value


def _row(row: Any, where: str) -> str:
    """One toolkit's row; its toolkit."""
    row = mapping(row, where)
    toolkit = required(row, "toolkit", where, text)
    required(row, "name", where, text)
    required(row, "available", where, _flag)
    required(row, "robust_accuracy", where, nullable(fraction))
    for key in _MEASURES:
        required(row, key, where, nullable(number))
    for key in ("params", "toolkit_params"):
        optional(row, key, where, mapping)
    optional(row, "same_attack", where, _flag)
    for key in ("missing", "implied", "broken_samples"):
        optional(row, key, where, rows)
    for key in ("note", "error"):
        optional(row, key, where, text)
    return toolkit


def _results(report: Mapping[str, Any]) -> None:
    results = required(report, "results", "", rows)
    if not results:
        raise Damage("results is empty (one row per toolkit)")
    seen: set[str] = set()
    for i, row in enumerate(results):
        toolkit = _row(row, f"results[{i}]")
        if toolkit in seen:
            raise Damage(f"results[{i}] repeats the toolkit {toolkit!r} (one row per toolkit)")
        seen.add(toolkit)


def _noise(value: Any, where: str) -> None:
    noise = mapping(value, where)
    for i, seed in enumerate(required(noise, "seeds", where, rows)):
        integer(seed, f"{where}: seeds[{i}]", low=None)
    optional(noise, "fraction", where, fraction)


def _disagreement(value: Any, where: str) -> None:
    entry = mapping(value, where)
    pair = required(entry, "pair", where, rows)
    if len(pair) != 2:
        raise Damage(f"{where}: pair holds {len(pair)} toolkits, expected 2")
    only = required(entry, "only_broken_by", where, mapping)
    for toolkit in pair:
        at = f"{where}: only_broken_by[{text(toolkit, f'{where}: pair')!r}]"
        integer(field(only, toolkit, at), at)
    required(entry, "count", where, integer)
    required(entry, "fraction", where, fraction)
    required(entry, "samples", where, rows)
    required(entry, "expected_noise", where, nullable(number))


def check_comparison_report(report: Mapping[str, Any]) -> None:
    """A finished comparison report (the dict of :func:`robustreg.compare.compare`, read back from JSON)."""
    required(report, "attack", "", text)
    required(report, "eps", "", number)
    required(report, "norm", "", text)
    required(report, "n", "", lambda value, at: integer(value, at, low=1))
    required(report, "clean_accuracy", "", fraction)
    optional(report, "seed", "", lambda value, at: integer(value, at, low=None))
    optional(report, "params", "", mapping)
    fingerprinted(report, "model")
    fingerprinted(report, "data")
    _results(report)
    for pair, value in required(report, "agreement", "", mapping).items():
        nullable(fraction)(value, f"agreement[{pair!r}]")  # None: no sample was attacked (compare's agreement)
    optional(report, "noise", "", _noise)
    for i, entry in enumerate(rows(report.get("disagreements") or [], "disagreements")):
        _disagreement(entry, f"disagreements[{i}]")
    for i, check in enumerate(rows(report.get("checks") or [], "checks")):
        mapping(check, f"checks[{i}]")
