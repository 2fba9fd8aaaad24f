"""What a finished ``curve`` report.json must hold before it is trusted as "report already there".

:func:`saved_identity` checks what :func:`~robustreg_plugins.minimal_norm.curve.curve_report` and the command write
and what the renderers read -- the identity (strings), n, the counts, one norm per sample (n of them),
the curve's points, the verification rows, the flagged eps -- and returns the identity; the first field
that is wrong raises :class:`~robustreg.readback.Damage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustreg.readback import Damage, fraction, integer, mapping, nullable, number, optional, required, rows, text

__all__ = ["check_curve_report", "saved_identity"]


def _identity(value: Any, where: str) -> Mapping[str, str]:
    identity = mapping(value, where)
    for key, item in identity.items():
        text(item, f"{where}[{key!r}]")
    return identity


def _norms(value: Any, where: str, n: int) -> None:
    norms = rows(value, where)
    if len(norms) != n:
        raise Damage(f"{where} holds {len(norms)} per-sample values, expected {n}")
    for i, norm in enumerate(norms):
        nullable(number)(norm, f"{where}[{i}]")


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise Damage(f"{where} is {value!r}, not true or false")
    return value


def _verification(value: Any, where: str) -> None:
    row = mapping(value, where)
    required(row, "attack", where, text)
    required(row, "eps", where, number)
    for key in ("robust_accuracy", "curve_accuracy"):
        required(row, key, where, fraction)
    for key in ("count", "curve_only"):
        required(row, key, where, integer)
    for key in ("flagged", "beyond_noise"):
        required(row, key, where, _flag)


def check_curve_report(report: Mapping[str, Any]) -> None:
    """A finished curve report (read back from JSON)."""
    required(report, "identity", "", _identity)
    required(report, "attack", "", text)
    required(report, "norm", "", text)
    n = required(report, "n", "", lambda value, at: integer(value, at, low=1))
    required(report, "clean_accuracy", "", fraction)
    for key in ("found", "not_found"):
        required(report, key, "", integer)
    for key in ("median_norm", "mean_norm_found"):
        required(report, key, "", nullable(number))
    required(report, "params", "", mapping)
    required(report, "seed", "", lambda value, at: integer(value, at, low=None))
    required(report, "seconds", "", number)
    required(report, "device", "", text)
    required(report, "norms", "", lambda value, at: _norms(value, at, n))
    curve = required(report, "curve", "", rows)
    if not curve:
        raise Damage("curve is empty")
    for i, point in enumerate(curve):
        point = mapping(point, f"curve[{i}]")
        required(point, "eps", f"curve[{i}]", number)
        required(point, "robust_accuracy", f"curve[{i}]", fraction)
    for i, row in enumerate(rows(report.get("verification") or [], "verification")):
        _verification(row, f"verification[{i}]")
    for key in ("model", "data"):
        optional(report, key, "", mapping)


def saved_identity(report: Mapping[str, Any]) -> Mapping[str, str]:
    """The identity of a finished curve report, once :func:`check_curve_report` passed."""
    check_curve_report(report)
    return report["identity"]
