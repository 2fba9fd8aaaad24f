"""Kept adversarial examples (``save_adv=DIR``, ``--save-adv DIR``): every cell's points with their sample indices.

The point kept is the one the verdict judged (:func:`robustreg.verdict.attack_and_judge`: a minimal-norm
attack's point read at the cell's eps), one file per attacked batch, written atomically as soon as the batch
is judged and before the run's state records it, so an interrupted run that resumes loses none and writes
none twice (batch ``k`` of a cell is always the same samples: a resumed run recomputes only the batches its
state has not recorded, and rewrites their files whole).  Memory stays that of one batch.

Layout::

    DIR/manifest.json                          what is here: the run's identity, the cells, complete or not
    DIR/<label>/eps=<eps>/batch-<k>.pt         {"indices": int64 (b,), "x_adv": (b, C, H, W)}, k = 00000, ...

``<label>`` is the attack's label in the report with every character but letters, digits and ``._#-`` as
``_`` (``autoattack:standard`` -> ``autoattack_standard``), ``<eps>`` the eps as Python writes the float.
``indices`` are positions in the evaluated data (the report's sample order); only the points an attack ran
on are kept (clean-correct ones; in cascade mode those the earlier attacks left standing).  The manifest
lists, per cell, its label, attack, eps, folder and number of batches, and says ``complete`` once the run
finished.  A folder holding another run's examples (the manifest's identity -- attacks, parameters, eps,
data, model, seed, batch size, ... -- differs) or files without a manifest is refused, never mixed.
:func:`load_adversarial` reads the examples back.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ..errors import UserError
from ..files import remove_stale_temporaries, save_atomic, write_atomic
from .config import Plan

__all__ = ["FORMAT", "MANIFEST", "AdvWriter", "AdversarialSink", "CellExamples", "load_adversarial"]

FORMAT, VERSION, MANIFEST = "robustreg adversarial examples", 1, "manifest.json"
_BATCH = re.compile(r"^batch-(\d+)\.pt$")


def _folder(label: str, eps: float) -> str:
    return f"{re.sub(r'[^A-Za-z0-9._#-]', '_', label)}/eps={eps!r}"


def _refused(folder: Path, why: str) -> UserError:
    return UserError(f"save_adv {str(folder)!r} {why}; choose another folder (--save-adv) or delete it")


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.exists():
        if folder.is_dir() and any(p for p in folder.iterdir() if not p.name.startswith(".")):
            raise _refused(folder, "holds files but no manifest.json (not robustreg's adversarial examples)")
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _refused(folder, f"has a manifest.json that cannot be read ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refused(folder, "has a manifest.json that is not robustreg's adversarial examples")
    return manifest


class AdversarialSink(Protocol):
    """Where the engine hands each attacked batch's adversarial points (:class:`AdvWriter` writes them to disk;
    an analysis measures them): batch ``k`` of cell ``(e, a)``, its sample indices (CPU) and the judged points."""

    def add(self, e: int, a: int, k: int, indices: torch.Tensor, x_adv: torch.Tensor) -> None: ...


@dataclass
class AdvWriter:
    """Writes the batches of every cell of ``plan`` into ``folder`` (see the module docstring)."""

    folder: Path
    plan: Plan
    identity: dict[str, Any]
    shape: list[int]
    main: bool = True  # the rank that writes the manifest (every rank writes its own batches)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.identity = json.loads(json.dumps(self.identity, default=repr))  # as the manifest holds it

    def start(self) -> None:
        """Refuse a folder holding another run's examples (or foreign files); write the manifest (incomplete).
        Called on one process (rank 0 under torchrun) before any batch is written."""
        found = _read_manifest(self.folder)
        if found is not None and found.get("identity") != self.identity:
            given = found.get("identity")
            theirs: dict[str, Any] = given if isinstance(given, dict) else {}
            differ = sorted(k for k in set(self.identity) | set(theirs) if self.identity.get(k) != theirs.get(k))
            raise _refused(self.folder, f"holds the adversarial examples of another run ({', '.join(differ)} differ)")
        remove_stale_temporaries(self.folder)
        self._manifest(None)

    def path(self, e: int, a: int, k: int) -> Path:
        return self.folder / _folder(self.plan.plans[a].label, self.plan.eps[e]) / f"batch-{k:05d}.pt"

    def add(self, e: int, a: int, k: int, indices: torch.Tensor, x_adv: torch.Tensor) -> None:
        """Batch ``k`` of cell (``e``, ``a``): the samples ``indices`` and their adversarial points."""
        save_atomic({"indices": indices.detach().to("cpu", torch.int64).clone(), "x_adv": x_adv.detach().cpu()},
                    self.path(e, a, k))

    def finish(self, batches: dict[tuple[int, int], int]) -> None:
        """Mark the folder complete: each cell holds ``batches[(e, a)]`` batches; any file beyond them (left by an
        earlier, interrupted run of this configuration that split the cell otherwise) is removed."""
        if not self.main:
            return
        for (e, a), count in batches.items():
            cell = self.path(e, a, 0).parent
            for path in cell.glob("batch-*.pt") if cell.is_dir() else ():
                match = _BATCH.match(path.name)
                if match and int(match[1]) >= count:
                    path.unlink()
        self._manifest(batches)

    def _manifest(self, batches: dict[tuple[int, int], int] | None) -> None:
        cells = [{"label": self.plan.plans[a].label, "attack": self.plan.plans[a].name, "eps": self.plan.eps[e],
                  "folder": _folder(self.plan.plans[a].label, self.plan.eps[e]),
                  "batches": None if batches is None else batches.get((e, a), 0)} for e, a in self.plan.cells()]
        manifest = {"format": FORMAT, "version": VERSION, "complete": batches is not None, "shape": self.shape,
                    "identity": self.identity, "cells": cells}
        write_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")


@dataclass(frozen=True)
class CellExamples:
    """One cell's kept examples: ``indices`` (m,) into the evaluated data and ``x_adv`` (m, C, H, W)."""

    label: str
    attack: str
    eps: float
    indices: torch.Tensor
    x_adv: torch.Tensor


def _cell(folder: Path, entry: dict[str, Any], shape: list[int], partial: bool) -> CellExamples:
    where = folder / entry["folder"]
    files = sorted(where.glob("batch-*.pt")) if where.is_dir() else []
    if entry.get("batches") is not None:
        files = files[: int(entry["batches"])]
        if len(files) != int(entry["batches"]) and not partial:
            raise UserError(f"{where}: {len(files)} batch files, the manifest lists {entry['batches']}")
    parts = [torch.load(p, map_location="cpu", weights_only=True) for p in files]
    indices = torch.cat([p["indices"] for p in parts]) if parts else torch.empty(0, dtype=torch.int64)
    x_adv = torch.cat([p["x_adv"] for p in parts]) if parts else torch.empty(0, *shape)
    return CellExamples(entry["label"], entry["attack"], float(entry["eps"]), indices, x_adv)


def load_adversarial(folder: str | os.PathLike[str], *, partial: bool = False) -> list[CellExamples]:
    """Every cell's kept examples in ``folder`` (a ``save_adv`` folder), in the report's order of ``results``.

    A folder of a run that has not finished is refused unless ``partial`` (then each cell holds the batches
    written so far)."""
    root = Path(folder)
    manifest = _read_manifest(root)
    if manifest is None:
        raise UserError(f"{str(root)!r} holds no manifest.json: not a folder of kept adversarial examples")
    if not manifest.get("complete") and not partial:
        raise UserError(f"{str(root)!r}: the run that writes it has not finished (manifest incomplete); "
                        f"pass partial=True to read the batches written so far")
    return [_cell(root, entry, list(manifest["shape"]), partial) for entry in manifest["cells"]]
