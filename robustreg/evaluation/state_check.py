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

from ..readback import Damage, described, field, integer, mapping, number, per_sample, rows, text

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
    for key, item in mapping(value, where).items():
        check(item, f"{where}[{key!r}]")


def _pair(value: Any, where: str) -> None:
    """A scalar extra's [sum of value * weight, sum of weights]."""
    if len(rows(value, where)) != 2:
        raise Damage(f"{where} holds {len(value)} numbers, expected 2 (sum, weight)")
    for i, item in enumerate(value):
        number(item, f"{where}[{i}]")


def _cell(cell: Any, where: str, n: int) -> bool:
    """One cell of a state (what :meth:`.cells.Cell.from_state` reads); whether it is done."""
    cell = mapping(cell, where)
    for key, kind in (("ran", "bool"), ("broken", "bool"), ("distance", "float")):
        per_sample(field(cell, key, f"{where}: {key}"), f"{where}: {key}", n, kind)
    for key, kind in (("queries", "float"), ("nonfinite", "bool")):
        if cell.get(key) is not None:
            per_sample(cell[key], f"{where}: {key}", n, kind)
    _mapping_of(field(cell, "extras", f"{where}: extras"), f"{where}: extras",
                lambda value, at: per_sample(value, at, n, "float"))
    _mapping_of(field(cell, "scalars", f"{where}: scalars"), f"{where}: scalars", _pair)
    _mapping_of(cell.get("reductions", {}), f"{where}: reductions", text)
    _mapping_of(cell.get("flags", {}), f"{where}: flags", integer)
    for i, value in enumerate(rows(cell.get("trace", []), f"{where}: trace")):
        number(value, f"{where}: trace[{i}]")
    number(cell.get("trace_count", 0.0), f"{where}: trace_count")
    integer(field(cell, "nan", f"{where}: nan"), f"{where}: nan")
    number(field(cell, "seconds", f"{where}: seconds"), f"{where}: seconds")
    integer(field(cell, "chunks_done", f"{where}: chunks_done"), f"{where}: chunks_done")
    done = field(cell, "done", f"{where}: done")
    if not isinstance(done, bool):
        raise Damage(f"{where}: done is {described(done)}, not a bool")
    return done


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
    idx = field(record, "idx", f"{where}: idx")
    size = int(idx.shape[0]) if hasattr(idx, "shape") and len(idx.shape) == 1 else -1
    per_sample(idx, f"{where}: idx", size, "int")
    if size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise Damage(f"{where}: idx holds sample indices outside 0..{n - 1}")
    for key, kind in (("broken", "bool"), ("distance", "float"), ("nan_rows", "bool")):
        per_sample(field(record, key, f"{where}: {key}"), f"{where}: {key}", size, kind)
    number(field(record, "seconds", f"{where}: seconds"), f"{where}: seconds")
    mapping(field(record, "extras", f"{where}: extras"), f"{where}: extras")
    for i, name in enumerate(rows(field(record, "sums", f"{where}: sums"), f"{where}: sums")):
        text(name, f"{where}: sums[{i}]")


def check_batch_records(state: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """A per-rank file of batch records (``state.rank<R>.pt``) whose fingerprint matched ``expected``."""
    n = int(expected["n"])
    names = _cell_names(expected)
    for key, batches in _cells(state, names).items():
        for k, record in mapping(batches, f"cell {names[key]!r}").items():
            integer(k, f"cell {names[key]!r}: batch number {k!r}")
            _record(record, f"cell {names[key]!r}, batch {k}", n)
