"""Distributed evaluation: the cells' batches sharded over torch.distributed ranks, gathered back.

Each cell (attack x eps) is split into the same batches as in one process -- the points it runs on,
in sample order, ``batch_size`` at a time -- and batch ``k`` runs on rank ``k % world_size``.  An
attack draws its randomness from a generator seeded afresh on every call, so a batch gives the same
result on whichever rank runs it.  After each cell every rank gathers every batch's record and
replays them into its :class:`~robustreg.evaluation.cells.Cell` in batch order, so all ranks hold the
same state as one process would (cascade mode reads the earlier cells' per-sample results), and the
report is identical to a single-process run's with the same seed.

Resume: rank 0 keeps the state file (``state.pt``) of the finished cells; each rank keeps the
records of its batches of the unfinished cells in ``state.rank<R>.pt`` beside it.  A resumed run,
with any world size, reads every such file it can see (each rank reads its own node's), skips the
batches recorded there and finishes with the same report.  The files carry the run's fingerprint
(the world size is not part of it) and one of another configuration is refused.

:func:`shard_batches` is the same split for a job without cells or state (the clean pass, ``compare``'s
rows, the transfer analysis's crafting, the automatic checks' own attacks through :func:`check_pieces`): batch
``k`` on rank ``k % world_size``, every batch's value gathered to every rank in batch order, and an
error in a batch raised on every rank.

:func:`process_group` initialises the group under torchrun (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``
in the environment): NCCL when the evaluation runs on CUDA (``cuda:LOCAL_RANK``), gloo on the CPU.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..attack import AttackResult
from ..files import save_atomic
from .cells import FLAGS, TRACE, Cell
from .state import STATE_VERSION, load_state
from .state_check import check_batch_records

__all__ = ["SINGLE", "Group", "Shards", "check_pieces", "env_world_size", "plain_record", "process_group", "replay",
           "shard_batches", "shard_path", "torchrun_env"]

T = TypeVar("T")


def torchrun_env() -> bool:
    """Is this process one of a torchrun launch (``WORLD_SIZE`` and ``RANK`` set)?"""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class Group:
    """This process's place in the run: world size, rank, local rank (None outside torchrun)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def all_run(self, fn: Callable[[], T]) -> list[T]:
        """``fn()`` on every rank, gathered; an error on any rank is raised on every rank (none waits
        forever for a rank that failed)."""
        try:
            outcome: tuple[bool, Any] = (True, fn())
        except Exception as exc:
            outcome = (False, exc)
        gathered = self.gather(outcome)
        for r, (ok, value) in enumerate(gathered):
            if not ok:
                if r == self.rank or self.world_size == 1:
                    raise value
                raise RuntimeError(f"rank {r} failed: {type(value).__name__}: {value}") from value
        return [value for _, value in gathered]

    def main_run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0 only, its value (or its error) on every rank."""
        if self.world_size == 1:
            return fn()
        outcome: tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                outcome = (True, fn())
            except Exception as exc:
                outcome = (False, exc)
        ok, value = self.broadcast(outcome)
        if not ok:
            raise value
        return value


SINGLE = Group()


@contextmanager
def process_group(device: torch.device) -> Iterator[Group]:
    """This process's :class:`Group`: an initialised group as it is; under torchrun without one, a
    group initialised here (NCCL for a CUDA ``device``, else gloo) and destroyed at the end; else
    :data:`SINGLE`."""
    dist = torch.distributed
    own = False
    if dist.is_available() and not dist.is_initialized() and torchrun_env() and env_world_size() > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        own = True
    try:
        if dist.is_available() and dist.is_initialized():
            local = os.environ.get("LOCAL_RANK")
            yield Group(int(dist.get_world_size()), int(dist.get_rank()), int(local) if local else None)
        else:
            yield SINGLE
    finally:
        if own:
            dist.destroy_process_group()


# --- batches shared by the ranks (compare, transfer) --------------------------------------------------
def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (the gather sends it), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def shard_batches(group: Group, count: int, run: Callable[[int], T]) -> tuple[list[T], float]:
    """``run(k)`` for the batches ``k < count`` of a job split as one process splits it, batch ``k`` on rank
    ``k % world_size``; every batch's value on every rank, in batch order, and the seconds this rank spent
    after its own batches (waiting for the others, the gather).

    ``run(k)`` must depend on ``k`` alone (an attack seeded afresh on every call does), so that the values
    are those of one process.  An error in a batch is raised on every rank: the one of the lowest batch
    that failed, which is the error one process meets first (a copy on the ranks that did not raise it)."""
    mine: dict[int, T] = {}
    failed: tuple[int, Exception] | None = None  # this rank's first failing batch and its error
    for k in range(group.rank, count, group.world_size):
        try:
            mine[k] = run(k)
        except Exception as exc:
            if group.world_size == 1:
                raise
            failed = (k, exc)
            break
    if group.world_size == 1:
        return [mine[k] for k in range(count)], 0.0
    ended = time.perf_counter()
    parts = group.gather((mine, None if failed is None else (failed[0], _portable(failed[1]))))
    failures = [part[1] for part in parts if part[1] is not None]
    if failures:
        first = min(failures, key=lambda f: f[0])
        if failed is not None and failed[0] == first[0]:
            raise failed[1]  # this rank's own error, with its traceback
        raise first[1]
    merged: dict[int, T] = {}
    for values, _ in parts:
        merged.update(values)
    return [merged[k] for k in range(count)], time.perf_counter() - ended


def check_pieces(group: Group) -> Callable[[int, Callable[[int], Any]], list[Any]] | None:
    """The automatic checks' ``CheckContext.shard`` for ``group``: their pieces spread over its ranks as
    batches are (None in one process).  Every rank must then run the checks."""
    if group.world_size == 1:
        return None
    return lambda count, run: shard_batches(group, count, run)[0]


# --- one batch's record, as plain tensors and containers ------------------------------------------
def _plain_extra(name: str, value: Any) -> Any:
    """An extra in a form ``torch.load(weights_only=True)`` reads back and :meth:`Cell.record` treats
    exactly as the original."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if name == TRACE:
        try:
            return torch.as_tensor(value).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            return None  # Cell.record ignores it too
    if name == FLAGS:
        return [str(value)] if isinstance(value, str) else [str(m) for m in list(value or ())]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # non-numeric: not reported


def plain_record(idx: torch.Tensor, broken: torch.Tensor, distance: torch.Tensor, nan_rows: torch.Tensor,
                 result: AttackResult, seconds: float) -> dict[str, Any]:
    """What :meth:`Cell.record` needs of one batch, without the adversarial points."""
    queries = None if result.queries is None else torch.as_tensor(result.queries).detach().cpu()
    return {"idx": idx.cpu(), "broken": broken.cpu(), "distance": distance.cpu(), "nan_rows": nan_rows.cpu(),
            "seconds": float(seconds), "queries": queries,
            "extras": {str(k): _plain_extra(str(k), v) for k, v in result.extras.items()},
            "sums": sorted(str(k) for k in result.extras if result.reduction(str(k)) == "sum")}


def replay(cell: Cell, record: dict[str, Any]) -> None:
    """Record one batch's :func:`plain_record` into ``cell``, as the rank that ran it would have."""
    result = AttackResult(torch.empty(0), record["queries"], dict(record["extras"]),
                          {name: "sum" for name in record["sums"]})
    nan_rows = record["nan_rows"]
    cell.record(record["idx"], record["broken"], record["distance"], result, int(nan_rows.sum()),
                record["seconds"], nan_rows)


# --- per-rank files of the unfinished cells' batches ------------------------------------------------
Records = dict[str, dict[int, dict[str, Any]]]  # cell key "e:a" -> batch index -> plain record


def shard_path(state_file: Path, rank: int) -> Path:
    """``state.pt`` -> ``state.rank<R>.pt`` beside it."""
    return state_file.with_name(f"{state_file.stem}.rank{rank}{state_file.suffix}")


def _shard_files(state_file: Path) -> dict[int, Path]:
    prefix = f"{state_file.stem}.rank"
    found = {}
    for path in state_file.parent.glob(f"{prefix}*{state_file.suffix}"):
        number = path.name[len(prefix):len(path.name) - len(state_file.suffix)]
        if number.isdigit():
            found[int(number)] = path
    return found


def _merge(into: Records, more: Records) -> Records:
    for key, batches in more.items():
        into.setdefault(key, {}).update(batches)
    return into


@dataclass
class Shards:
    """This rank's file of batch records (``path`` None: nothing saved) and every record a resumed run
    found (``known``, from all ranks' files)."""

    state_file: Path | None
    rank: int
    fingerprint: dict[str, Any]
    own: Records = field(default_factory=dict)
    known: Records = field(default_factory=dict)

    @property
    def path(self) -> Path | None:
        return None if self.state_file is None else shard_path(self.state_file, self.rank)

    @classmethod
    def open(cls, state_file: Path | None, fingerprint: dict[str, Any], group: Group) -> Shards:
        """Read the batch files beside ``state_file`` this rank can see (any world size wrote them; one
        of another configuration: ValueError on every rank) and share what each rank found."""
        if state_file is None:
            return cls(None, group.rank, fingerprint)

        def read() -> tuple[Records, Records]:
            found: Records = {}
            own: Records = {}
            for number, path in sorted(_shard_files(state_file).items()):
                saved = load_state(path, fingerprint, check_batch_records)
                cells = {} if saved is None else saved.get("cells", {})
                _merge(found, cells)
                if number == group.rank or (group.is_main and number >= group.world_size):
                    _merge(own, cells)  # kept in this rank's file (an orphan's by rank 0)
            return found, own

        parts = group.all_run(read)
        known: Records = {}
        for found, _ in parts:
            _merge(known, found)
        return cls(state_file, group.rank, fingerprint, parts[group.rank][1], known)

    def add(self, key: str, k: int, record: dict[str, Any]) -> None:
        self.own.setdefault(key, {})[k] = record
        self.save()

    def forget(self, key: str) -> None:
        """The cell is in the state file now: its records are no longer needed."""
        self.own.pop(key, None)
        self.known.pop(key, None)

    def save(self) -> None:
        if self.path is not None:
            save_atomic({"version": STATE_VERSION, "fingerprint": self.fingerprint, "cells": self.own}, self.path)

    def remove(self, group: Group) -> None:
        """Delete this rank's file (rank 0: also the files of ranks beyond this world size)."""
        if self.state_file is None:
            return
        for number, path in _shard_files(self.state_file).items():
            if number == group.rank or (group.is_main and number >= group.world_size):
                path.unlink(missing_ok=True)
