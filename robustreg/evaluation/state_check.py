"""What a resumed evaluation state must hold before any of it is used.

:func:`~robustreg.evaluation.state.load_state` checks a state's version and fingerprint; these check the
rest against that fingerprint (the run's ``n``, attacks and eps): the clean-correct flags and, per cell,
every per-sample tensor of length n and of its type, the counters and sums :class:`~.cells.Cell` keeps,
and only the cells of the plan, in run order (a cell is started only once every earlier one finished).
The per-rank batch files of a distributed run (:mod:`.distributed`) are checked the same way
(:func:`check_batch_records`).  The first field that is wrong raises :class:`~robustreg.readback.Damage`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..readback import Damage, described, field, integer, mapping, number, optional, per_sample, required, rows, text

__all__ = ["StateCheck", "check_batch_records", "check_fingerprint", "check_run_state"]

StateCheck = Callable[[Mapping[str, Any], Mapping[str, Any]], None]  # (saved state, expected fingerprint)


def check_fingerprint(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """The state's fingerprint: a mapping (compared with the run's by the caller)."""
    return mapping(field(state, "fingerprint", "fingerprint"), "fingerprint")


def _cell_names(expected: Mapping[str, Any]) -> dict[str, str]:
    """Cell key ``"e:a"`` -> ``'name@eps'``, in run order, from a fingerprint (see :func:`.state.fingerprint`)."""
    attacks = [str(entry).split(" ", 1)[0] for entry in expected["attacks"]]
    return {f"{e}:{a}": f"{name}@{eps}" for e, eps in enumerate(expected["eps"]) for a, name in enumerate(attacks)}


def _cells(state: Mapping[str, Any], names: Mapping[str, str]) -> Mapping[str, Any]:
    cells = mapping(field(state, "cells", "cells"), "cells")
    for key in cells:
        if key not in names:
            raise Damage(f"cells holds {key!r}, which is not a cell of this run ({', '.join(names.values())})")
    return cells


def _mapping_of(value: Any, where: str, check: Callable[[Any, str], Any]) -> None:
    """A mapping whose every value passes ``check``."""
    for key, item in mapping(value, where).items():
        check(item, f"{where}[{key!r}]")


def _samples(n: int | None, kind: str) -> Callable[[Any, str], Any]:
    """The check of a tensor of ``n`` per-sample values of ``kind`` (see :func:`~robustreg.readback.per_sample`)."""
    return lambda value, where: per_sample(value, where, n, kind)


def _pair(value: Any, where: str) -> None:
    """A scalar extra's [sum of value * weight, sum of weights]."""
    if len(rows(value, where)) != 2:
        raise Damage(f"{where} holds {len(value)} numbers, expected 2 (sum, weight)")
    for i, item in enumerate(value):
        number(item, f"{where}[{i}]")


def _cell(cell: Any, where: str, n: int) -> bool:
    """One cell of a state (what :meth:`.cells.Cell.from_state` reads); whether it is done."""
    cell = mapping(cell, where)
    flags, values = _samples(n, "bool"), _samples(n, "float")
    for key, check in (("ran", flags), ("broken", flags), ("distance", values)):
        required(cell, key, where, check)
    optional(cell, "queries", where, values)
    optional(cell, "nonfinite", where, flags)
    required(cell, "extras", where, lambda v, at: _mapping_of(v, at, values))
    required(cell, "scalars", where, lambda v, at: _mapping_of(v, at, _pair))
    optional(cell, "reductions", where, lambda v, at: _mapping_of(v, at, text))
    optional(cell, "flags", where, lambda v, at: _mapping_of(v, at, integer))
    optional(cell, "trace", where, lambda v, at: [number(item, f"{at}[{i}]") for i, item in enumerate(rows(v, at))])
    optional(cell, "trace_count", where, number)
    required(cell, "nan", where, integer)
    required(cell, "seconds", where, number)
    required(cell, "chunks_done", where, integer)
    return required(cell, "done", where, _flag)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise Damage(f"{where} is {described(value)}, not a bool")
    return value


def check_run_state(state: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """The state file of a run (``state.pt``) whose fingerprint matched ``expected``."""
    n = int(expected["n"])
    per_sample(field(state, "clean_correct", "clean_correct"), "clean_correct", n, "bool")
    names = _cell_names(expected)
    cells = _cells(state, names)
    unfinished = None  # the first cell of the run order that is not done; no later one may be recorded
    for key, name in names.items():
        if key not in cells:
            if unfinished is None:
                unfinished = name
            continue
        if unfinished is not None:
            raise Damage(f"cell {name!r} is recorded but the earlier cell {unfinished!r} is not finished")
        if not _cell(cells[key], f"cell {name!r}", n):
            unfinished = name


def _record(record: Any, where: str, n: int) -> None:
    """One batch's :func:`.distributed.plain_record`."""
    record = mapping(record, where)
    idx = required(record, "idx", where, _samples(None, "int"))
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise Damage(f"{where}: idx holds sample indices outside 0..{n - 1}")
    size = int(idx.numel())
    for key, kind in (("broken", "bool"), ("distance", "float"), ("nan_rows", "bool")):
        required(record, key, where, _samples(size, kind))
    required(record, "seconds", where, number)
    required(record, "extras", where, mapping)
    required(record, "sums", where, lambda v, at: [text(name, f"{at}[{i}]") for i, name in enumerate(rows(v, at))])


def check_batch_records(state: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """A per-rank file of batch records (``state.rank<R>.pt``) whose fingerprint matched ``expected``."""
    n = int(expected["n"])
    names = _cell_names(expected)
    for key, batches in _cells(state, names).items():
        for k, record in mapping(batches, f"cell {names[key]!r}").items():
            integer(k, f"cell {names[key]!r}: batch number {k!r}")
            _record(record, f"cell {names[key]!r}, batch {k}", n)
