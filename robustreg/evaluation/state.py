"""Resume state: the run's identity (fingerprints) and its per-cell records, saved after every batch.

A state file carries the fingerprint of the configuration that wrote it (attacks and their
parameters, eps, norm, n, seed, mode, batch size, data -- a hash of every image and label --, model,
speed options, the targeted mode); a state written for another configuration, in an older format,
unreadable (truncated, corrupted) or damaged (a field missing or of another type, a per-sample tensor
not of length n, a cell not of the plan: :mod:`.state_check`) is refused with one line, never silently
replaced or reused.  :func:`run_identity` and :func:`report_identity` say the same of a finished
report.json (checked by :mod:`.report_check` first), so a rerun into the same folder is told apart from
a run of another configuration.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.source import Images, TensorImages
from ..errors import UserError
from ..files import save_atomic
from ..readback import Damage
from ..runtime import SPEED_KEYS, SpeedOptions, predict
from .cells import Cell
from .config import AttackPlan, Mode, Plan
from .report_check import check_report
from .state_check import StateCheck, check_fingerprint, check_run_state

__all__ = [
    "STATE_VERSION",
    "RunState",
    "DataHash",
    "adaptive_text",
    "data_fingerprint",
    "fingerprint",
    "load_state",
    "model_fingerprint",
    "report_identity",
    "run_identity",
    "same_data",
    "speed_text",
]

STATE_VERSION = 2  # 2: the data fingerprint covers every image (1: the first 64)


def model_fingerprint(model: nn.Module) -> str:
    """sha256 (first 16 hex digits) of the model's class and its state dict (names, shapes, values)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        t = tensor.detach().to("cpu").contiguous()
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


class DataHash:
    """:func:`data_fingerprint` fed a batch at a time, in order (the clean pass reads every image once): after
    every image of ``x`` went through :meth:`update`, :meth:`hexdigest` equals ``data_fingerprint(x, y)``."""

    def __init__(self, shape: Sequence[int], y: torch.Tensor) -> None:
        self.h = hashlib.blake2b(digest_size=12)
        self.h.update(f"{tuple(shape)} {tuple(y.shape)}".encode())
        self.y, self.n, self.seen = y, int(shape[0]), 0

    def update(self, batch: torch.Tensor) -> None:
        self.h.update(batch.detach().to("cpu", torch.float32).contiguous().numpy().data)
        self.seen += int(batch.shape[0])

    def hexdigest(self) -> str:
        if self.seen != self.n:  # a wrong fingerprint must never pass for the data's
            raise RuntimeError(f"data fingerprint: {self.seen} of {self.n} images were hashed")
        h = self.h.copy()
        h.update(self.y.detach().to("cpu", torch.int64).contiguous().numpy().data)
        return h.hexdigest()


def hashed_clean_pass(model: nn.Module, x: Images, y: torch.Tensor, device: torch.device | str,
                      batch_size: int) -> tuple[torch.Tensor, str]:
    """The clean logits (CPU float32, ``batch_size`` images read at a time) and the data's fingerprint, hashed as
    the pass reads the images (:func:`data_fingerprint` of them: a streamed dataset is not read again to hash
    it).  The model must be on ``device`` in the mode to judge it in (one process; the engine shares its own clean
    pass out over ranks)."""
    hashed, parts = DataHash(x.shape, y), []
    for start in range(0, x.shape[0], batch_size):
        batch = x[start:start + batch_size]
        hashed.update(batch)
        parts.append(predict(model, batch, device, batch_size))
    return torch.cat(parts), hashed.hexdigest()


def data_fingerprint(x: torch.Tensor | Images, y: torch.Tensor, batch_size: int = 256) -> str:
    """blake2b (24 hex digits) of the shapes, every image (as float32) and every label (as int64).

    One pass over the whole tensors' bytes (no copy when they are already contiguous CPU float32 /
    int64): two datasets that differ in any pixel or label get different fingerprints.  A streamed
    :class:`~robustreg.data.source.Images` is read ``batch_size`` images at a time, with the same result as
    its images in one tensor.  (States of :data:`STATE_VERSION` 1 hashed the labels and only the first 64
    images, 16 hex digits.)
    """
    if isinstance(x, TensorImages):
        x = x.x
    h = DataHash(x.shape, y)
    if isinstance(x, torch.Tensor):
        h.update(x)
    else:
        for idx in torch.arange(len(x)).split(batch_size):
            h.update(x.read(idx))
    return h.hexdigest()


def same_data(path: Path | None, saved: Mapping[str, Any], now: str) -> None:
    """A saved state's data fingerprint against the one just computed from the data (a streamed dataset's,
    known once the clean pass has read every image): a UserError naming the field when they differ."""
    before = saved.get("fingerprint", {}).get("data")
    if before != now:
        raise _differs(path, "data", before, now)


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=repr)


def speed_text(speed: SpeedOptions | Mapping[str, Any] | None) -> str:
    """Canonical text of the speed options (None or a mapping without them: every option off)."""
    if isinstance(speed, SpeedOptions):
        values = speed.to_dict()
    else:
        default = SpeedOptions().to_dict()
        given = dict(speed or {})
        values = {key: given.get(key, default[key]) for key in SPEED_KEYS}
    return json.dumps(values, sort_keys=True)


# fingerprint entries a state written before they existed holds implicitly (their value back then)
_IMPLICIT = {"speed": speed_text(None), "targeted": "untargeted"}


def fingerprint(plan: Plan, x: torch.Tensor | Images, y: torch.Tensor, model: nn.Module,
                speed: SpeedOptions | None = None) -> dict[str, Any]:
    """What identifies a run: a saved state resumes only under the same values.  The ``data`` entry of a
    streamed ``x`` is None here: the run fills it in as its clean pass reads the images (:class:`DataHash`)."""
    return {
        "attacks": [f"{p.name} {_canonical(p.params)}" for p in plan.plans],
        "eps": [repr(v) for v in plan.eps],
        "norm": plan.norm,
        "n": int(x.shape[0]),
        "seed": repr(plan.seed),
        "early_exit": plan.mode is Mode.CASCADE,  # the field's old name, kept: states written before Mode resume
        "batch_size": int(plan.batch_size),
        "data": None if getattr(x, "streamed", False) else data_fingerprint(x, y),
        "model": model_fingerprint(model),
        "speed": speed_text(speed),
        "targeted": targeted_text(plan.targeted),
    }


def targeted_text(mode: str | None) -> str:
    """An identity's ``targeted`` value: the targeted mode, or ``untargeted``."""
    return "untargeted" if mode is None else str(mode)


def _text(value: Any) -> str:
    """Canonical JSON text of ``value`` as a report stores it (anything JSON does not know: its repr)."""
    return json.dumps(json.loads(json.dumps(value, default=repr)), sort_keys=True)


def run_identity(plans: Sequence[AttackPlan], eps: Sequence[float], norm: str, mode: str, seed: int | None,
                 x: torch.Tensor | Images, y: torch.Tensor, model: nn.Module,
                 speed: SpeedOptions | None = None, adaptive_budget: float | None = None,
                 targeted: str | None = None) -> dict[str, str]:
    """What a finished report must match to be this run's: :func:`report_identity` of the report it
    would write (``plans`` and ``eps`` as :func:`~robustreg.evaluation.config.plan_attacks` and
    :func:`~robustreg.evaluation.config.eps_values` give them; ``speed``: None, every option off;
    ``adaptive_budget``: the remedies' budget of an ``adaptive`` run, None for a plain one; ``targeted``: the
    targeted mode, None for an untargeted run)."""
    return {
        "model fingerprint": model_fingerprint(model),
        "data fingerprint": data_fingerprint(x, y),
        "attacks/params": _text([{"name": p.name, "params": p.params} for p in plans]),
        "eps": _text([float(e) for e in eps]),
        "norm": norm,
        "mode": mode,
        "seed": _text(seed),
        "n": str(int(x.shape[0])),
        "speed options": speed_text(speed),
        "adaptive": adaptive_text(adaptive_budget),
        "targeted": targeted_text(targeted),
    }


def adaptive_text(budget: Any) -> str:
    """An identity's ``adaptive`` value: ``off``, or on with the remedies' budget."""
    return "off" if budget is None else f"on, budget {float(budget):g}"


def report_identity(report: Mapping[str, Any]) -> dict[str, str]:
    """The values of a report.json that say which configuration wrote it (see :func:`run_identity`); a
    report that holds what no run writes is a :class:`~robustreg.readback.Damage` (:mod:`.report_check`)."""
    check_report(report)
    return {
        "model fingerprint": str(report.get("model", {}).get("fingerprint")),
        "data fingerprint": str(report.get("data", {}).get("fingerprint")),
        "attacks/params": _text([{"name": a.get("name"), "params": a.get("params", {})}
                                 for a in report.get("attacks", [])]),
        "eps": _text([float(e) for e in report.get("eps", [])]),
        "norm": str(report.get("norm")),
        "mode": str(report.get("mode")),
        "seed": _text(report.get("seed")),
        "n": str(report.get("n")),
        "speed options": speed_text(report.get("speed")),  # a report from before them: every option off
        "adaptive": adaptive_text((report.get("adaptive") or {}).get("budget")),
        "targeted": targeted_text((report.get("targeted") or {}).get("mode")),  # a report without it: untargeted
    }


def _first_sentence(exc: BaseException, width: int = 100) -> str:
    """The first sentence of an error's message, on one line (torch's load errors run on for lines)."""
    text = " ".join(str(exc).split()).split(". ")[0].rstrip(".")
    return (text if len(text) <= width else text[: width - 3] + "...") or type(exc).__name__


def _read(path: Path, what: str) -> Any:
    """``torch.load`` of ``path`` (weights only); a truncated or corrupted file is a one-line UserError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and OS errors alike: the file cannot be read back
        reason = _first_sentence(exc)
        raise UserError(f"{what} {path} cannot be read (truncated or corrupted? {reason}); delete it or "
                         f"use another --out/--state to start fresh") from exc


def _differs(path: Path | None, key: str, saved: Any, now: Any) -> UserError:
    return UserError(f"state file {path} was written for a different configuration: {key} differs "
                     f"(saved {saved!r}, now {now!r}); delete {path} or use another --out/--state to start fresh")


def _refused(path: Path, what: str) -> UserError:
    return UserError(f"state file {path}: {what}; delete it or use another --out/--state to start fresh")


def load_state(path: Path, expected: dict[str, Any], check: StateCheck = check_run_state) -> dict[str, Any] | None:
    """The state saved at ``path`` (None when there is none); a UserError if it cannot be read, is of
    another format, was written for another run or holds what no run writes (``check``: what the rest
    must hold, see :mod:`.state_check`; default a run's ``state.pt``)."""
    if not path.exists():
        return None
    state = _read(path, "state file")
    version = state.get("version") if isinstance(state, dict) else None
    if version == 1:
        raise UserError(f"state file {path} was written by an older robustreg whose data fingerprint covered "
                        f"only the first 64 images, so it cannot be checked against this data; delete it or "
                        f"use another --out/--state to start fresh")
    if version != STATE_VERSION:
        raise UserError(f"state file {path} is not a robustreg evaluation state (version {STATE_VERSION}); "
                        f"delete it or choose another --out/--state to start fresh")
    try:
        saved = {**_IMPLICIT, **check_fingerprint(state)}
    except Damage as exc:
        raise _refused(path, str(exc)) from None
    for key in expected:
        if expected[key] is None and key == "data":
            continue  # a streamed dataset's: compared by same_data once the clean pass has read it
        if saved.get(key) != expected[key]:
            raise _differs(path, key, saved.get(key), expected[key])
    try:
        check(state, expected)
    except Damage as exc:
        raise _refused(path, str(exc)) from None
    return state


@dataclass
class RunState:
    """The clean-correct flags and every cell of one run; :meth:`save` writes it to ``path``."""

    fingerprint: dict[str, Any]
    clean_correct: torch.Tensor
    path: Path | None = None
    cells: dict[str, Cell] = field(default_factory=dict)
    resumed: bool = False

    @classmethod
    def from_saved(cls, saved: dict[str, Any], path: Path | None) -> RunState:
        cells = {key: Cell.from_state(value) for key, value in saved["cells"].items()}
        return cls(saved["fingerprint"], saved["clean_correct"], path, cells, resumed=True)

    @property
    def n(self) -> int:
        return int(self.clean_correct.shape[0])

    @property
    def correct_count(self) -> int:
        return int(self.clean_correct.sum())

    def cell(self, e: int, a: int) -> Cell:
        """The cell of eps ``e`` and attack ``a`` (created empty on first use)."""
        return self.cells.setdefault(f"{e}:{a}", Cell.empty(self.n))

    def started(self, e: int, a: int) -> Cell | None:
        """The cell if it has recorded at least one batch (or finished), else None; creates nothing."""
        cell = self.cells.get(f"{e}:{a}")
        return None if cell is None or (cell.chunks_done == 0 and not cell.done) else cell

    def standing(self, e: int, a: int, mode: Mode) -> torch.Tensor:
        """Flags of the points attack ``a`` runs on at eps ``e``: clean-correct and, in ``Mode.CASCADE``,
        not broken by an earlier attack at this eps."""
        standing = self.clean_correct.clone()
        if mode is Mode.CASCADE:
            for earlier in range(a):
                standing &= ~self.cell(e, earlier).broken
        return standing

    def to_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "fingerprint": self.fingerprint, "clean_correct": self.clean_correct,
                "cells": {key: cell.to_state() for key, cell in self.cells.items()}}

    def save(self) -> None:
        if self.path is not None:
            save_atomic(self.to_dict(), self.path)
