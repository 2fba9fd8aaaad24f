"""What a finished evaluation report.json must hold before it is trusted as "report already there".

:func:`check_report` walks what :func:`~.report.build_report` writes and the renderers and
:func:`~.state.report_identity` read: ``n``, the accuracies, ``eps``, ``attacks``, ``model`` and ``data``
with their fingerprints, and one ``results`` row per cell (eps x attack, in run order, naming that attack
and that eps) and one ``worst_case`` row per eps.  Whether the report is this run's is then a matter of
its identity; the first field that is wrong raises :class:`~robustreg.readback.Damage`.

The per-sample verdicts (:mod:`.samples`; absent from reports written before them) must be n characters of
0 and 1 each and agree with the counts beside them: a row's ``broken``, a worst case's ``robust_accuracy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..readback import (
    Damage,
    fingerprinted,
    fraction,
    integer,
    mapping,
    number,
    optional,
    required,
    row_count,
    rows,
    text,
)
from .samples import unbits
from .targets import TARGETED_MODES

__all__ = ["check_report"]


def _targeted(value: Any, where: str) -> None:
    """A targeted run's entry: its ``mode`` (one of the targeted modes) and the ``rule`` its targets followed."""
    entry = mapping(value, where)
    mode = required(entry, "mode", where, text)
    if mode not in TARGETED_MODES:
        raise Damage(f"{where}: mode is {mode!r}, expected one of {', '.join(map(repr, TARGETED_MODES))}")
    required(entry, "rule", where, text)


def _result(row: Any, where: str, attack: str, eps: float) -> None:
    """One ``results`` row, expected for ``attack`` at ``eps``."""
    row = mapping(row, where)
    name, at = required(row, "attack", where, text), required(row, "eps", where, number)
    if name != attack or at != eps:
        raise Damage(f"{where} is {name!r} at eps {at:g}, expected {attack!r} at eps {eps:g}: one row per eps "
                     f"and attack, in run order")
    required(row, "robust_accuracy", where, fraction)
    optional(row, "label", where, text)
    for key in ("attacked", "broken"):
        required(row, key, where, integer)
    for key in ("seconds", "max_perturbation"):  # every row has them (the autoattack summary reads them)
        required(row, key, where, number)
    for key in ("mean_perturbation", "queries", "forwards", "backwards"):  # None or left out: not measured
        optional(row, key, where, number)
    optional(row, "extras", where, mapping)
    optional(row, "flags", where, mapping)


def _results(report: Mapping[str, Any], names: list[str], eps: list[float]) -> None:
    results = required(report, "results", "", rows)
    if len(results) != len(eps) * len(names):
        raise Damage(f"results holds {row_count(len(results))}, expected {len(eps) * len(names)}: one per eps and "
                     f"attack ({len(eps)} x {len(names)})")
    cells = [(e, name) for e in eps for name in names]  # the run order of :meth:`.config.Plan.cells`
    for i, (row, (e, name)) in enumerate(zip(results, cells)):
        _result(row, f"results[{i}]", name, e)


def _worst_case(report: Mapping[str, Any], eps: list[float]) -> None:
    worst = required(report, "worst_case", "", rows)
    if len(worst) != len(eps):
        raise Damage(f"worst_case holds {row_count(len(worst))}, expected {len(eps)}: one per eps")
    for i, (row, e) in enumerate(zip(worst, eps)):
        where = f"worst_case[{i}]"
        row = mapping(row, where)
        if required(row, "eps", where, number) != e:
            raise Damage(f"{where} is at eps {row['eps']:g}, expected {e:g}")
        required(row, "robust_accuracy", where, fraction)
        optional(row, "broken_only_by", where, mapping)


def _samples(report: Mapping[str, Any], n: int) -> None:
    """The per-sample verdicts, when the report has them: n bits each, agreeing with the counts."""
    if report.get("clean_correct_samples") is None:
        return  # a report from before them
    clean = unbits(report["clean_correct_samples"], "clean_correct_samples", n)
    if round(float(report["clean_accuracy"]) * n) != int(clean.sum()):
        raise Damage(f"clean_correct_samples holds {int(clean.sum())} correct samples, clean_accuracy says "
                     f"{report['clean_accuracy']!r} of {n}")
    for i, row in enumerate(report["results"]):
        where = f"results[{i}].broken_samples"
        broken = unbits(required(row, "broken_samples", f"results[{i}]", text), where, n)
        if int(broken.sum()) != row["broken"] or bool((broken & ~clean).any()):
            raise Damage(f"{where} marks {int(broken.sum())} samples (clean-correct ones only), broken says "
                         f"{row['broken']}")
    for e, row in enumerate(report["worst_case"]):
        where = f"worst_case[{e}].broken_samples"
        robust = clean & ~unbits(required(row, "broken_samples", f"worst_case[{e}]", text), where, n)
        if round(float(row["robust_accuracy"]) * n) != int(robust.sum()):
            raise Damage(f"{where} leaves {int(robust.sum())} samples robust, robust_accuracy says "
                         f"{row['robust_accuracy']!r} of {n}")


def _attack_names(report: Mapping[str, Any]) -> list[str]:
    names = []
    for i, entry in enumerate(required(report, "attacks", "", rows)):
        entry = mapping(entry, f"attacks[{i}]")
        names.append(required(entry, "name", f"attacks[{i}]", text))
        optional(entry, "params", f"attacks[{i}]", mapping)
        optional(entry, "label", f"attacks[{i}]", text)
    if not names:
        raise Damage("attacks is empty")
    return names


def check_report(report: Mapping[str, Any]) -> None:
    """A finished evaluation report (the dict of :func:`~.report.build_report`, read back from JSON)."""
    required(report, "n", "", lambda value, at: integer(value, at, low=1))
    required(report, "clean_accuracy", "", fraction)
    required(report, "norm", "", text)
    required(report, "mode", "", text)
    optional(report, "seed", "", lambda value, at: integer(value, at, low=None))
    eps = [number(e, f"eps[{i}]") for i, e in enumerate(required(report, "eps", "", rows))]
    if not eps:
        raise Damage("eps is empty")
    names = _attack_names(report)
    fingerprinted(report, "model")
    fingerprinted(report, "data")
    _results(report, names, eps)
    _worst_case(report, eps)
    _samples(report, int(report["n"]))
    for key in ("speed", "distributed"):
        optional(report, key, "", mapping)
    optional(report, "targeted", "", _targeted)
    for i, check in enumerate(rows(report.get("checks") or [], "checks")):
        mapping(check, f"checks[{i}]")
