"""What a finished evaluation report.json must hold before it is trusted as "report already there".

:func:`check_report` walks what :func:`~.report.build_report` writes and the renderers and
:func:`~.state.report_identity` read: ``n``, the accuracies, ``eps``, ``attacks``, ``model`` and ``data``
with their fingerprints, and one ``results`` row per cell (eps x attack, in run order, naming that attack
and that eps) and one ``worst_case`` row per eps.  Whether the report is this run's is then a matter of
its identity; the first field that is wrong raises :class:`~robustreg.readback.Damage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..readback import Damage, described, field, integer, mapping, number, rows, text

__all__ = ["check_report"]


def _row_count(count: int) -> str:
    return f"{count} row{'' if count == 1 else 's'}"


def _fraction(value: Any, where: str) -> None:
    if not 0.0 <= number(value, where) <= 1.0:
        raise Damage(f"{where} is {value!r}, expected a fraction in [0, 1]")


def _optional(entry: Mapping[str, Any], key: str, where: str, check: Any) -> None:
    if entry.get(key) is not None:
        check(entry[key], f"{where}: {key}")


def _result(row: Any, where: str, attack: str, eps: float) -> None:
    """One ``results`` row, expected for ``attack`` at ``eps``."""
    row = mapping(row, where)
    name = text(field(row, "attack", f"{where}: attack"), f"{where}: attack")
    at = number(field(row, "eps", f"{where}: eps"), f"{where}: eps")
    if name != attack or at != eps:
        raise Damage(f"{where} is {name!r} at eps {at:g}, expected {attack!r} at eps {eps:g}: one row per eps "
                     f"and attack, in run order")
    _fraction(field(row, "robust_accuracy", f"{where}: robust_accuracy"), f"{where}: robust_accuracy")
    _optional(row, "label", where, text)
    for key in ("attacked", "broken"):
        _optional(row, key, where, integer)
    for key in ("seconds", "max_perturbation", "mean_perturbation", "queries", "forwards", "backwards"):
        _optional(row, key, where, number)
    _optional(row, "extras", where, mapping)
    _optional(row, "flags", where, mapping)


def _results(report: Mapping[str, Any], names: list[str], eps: list[float]) -> None:
    results = rows(field(report, "results", "results"), "results")
    if len(results) != len(eps) * len(names):
        raise Damage(f"results holds {_row_count(len(results))}, expected {len(eps) * len(names)}: one per eps and "
                     f"attack ({len(eps)} x {len(names)})")
    cells = [(e, name) for e in eps for name in names]  # the run order of :meth:`.config.Plan.cells`
    for i, (row, (e, name)) in enumerate(zip(results, cells)):
        _result(row, f"results[{i}]", name, e)


def _worst_case(report: Mapping[str, Any], eps: list[float]) -> None:
    worst = rows(field(report, "worst_case", "worst_case"), "worst_case")
    if len(worst) != len(eps):
        raise Damage(f"worst_case holds {_row_count(len(worst))}, expected {len(eps)}: one per eps")
    for i, (row, e) in enumerate(zip(worst, eps)):
        where = f"worst_case[{i}]"
        row = mapping(row, where)
        if number(field(row, "eps", f"{where}: eps"), f"{where}: eps") != e:
            raise Damage(f"{where} is at eps {row['eps']:g}, expected {e:g}")
        _fraction(field(row, "robust_accuracy", f"{where}: robust_accuracy"), f"{where}: robust_accuracy")
        _optional(row, "broken_only_by", where, mapping)


def _fingerprinted(report: Mapping[str, Any], key: str) -> None:
    entry = mapping(field(report, key, key), key)
    text(field(entry, "fingerprint", f"{key}: fingerprint"), f"{key}: fingerprint")


def _attack_names(report: Mapping[str, Any]) -> list[str]:
    names = []
    for i, entry in enumerate(rows(field(report, "attacks", "attacks"), "attacks")):
        entry = mapping(entry, f"attacks[{i}]")
        names.append(text(field(entry, "name", f"attacks[{i}]: name"), f"attacks[{i}]: name"))
        mapping(entry.get("params", {}), f"attacks[{i}]: params")
        _optional(entry, "label", f"attacks[{i}]", text)
    if not names:
        raise Damage("attacks is empty")
    return names


def check_report(report: Mapping[str, Any]) -> None:
    """A finished evaluation report (the dict of :func:`~.report.build_report`, read back from JSON)."""
    integer(field(report, "n", "n"), "n", low=1)
    _fraction(field(report, "clean_accuracy", "clean_accuracy"), "clean_accuracy")
    text(field(report, "norm", "norm"), "norm")
    text(field(report, "mode", "mode"), "mode")
    seed = report.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise Damage(f"seed is {described(seed)}, not an integer")
    eps = [number(e, f"eps[{i}]") for i, e in enumerate(rows(field(report, "eps", "eps"), "eps"))]
    if not eps:
        raise Damage("eps is empty")
    names = _attack_names(report)
    _fingerprinted(report, "model")
    _fingerprinted(report, "data")
    _results(report, names, eps)
    _worst_case(report, eps)
    for key in ("speed", "distributed"):
        _optional(report, key, "report", mapping)
    for i, check in enumerate(rows(report.get("checks") or [], "checks")):
        mapping(check, f"checks[{i}]")
