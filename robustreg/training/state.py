"""The training state: everything a run needs to continue exactly where it stopped.

:class:`TrainState` holds the model, the optimizer, the lr schedule position, the GradScaler, the
defense's ``state_dict()``, the data generator and the epoch's order, the global RNGs a defense may
use (per rank), the step, the seconds trained and the step/epoch log meters.  Its
:meth:`~TrainState.state_dict` / :meth:`~TrainState.load_state_dict` alone define ``last.pt``:
plain tensors/dicts/lists/numbers/strings only, so ``torch.load(..., weights_only=True)`` reads it;
:meth:`~TrainState.save` writes it atomically (:func:`robustreg.files.save_atomic`) and
:meth:`~TrainState.resume` refuses a checkpoint of another configuration, naming the differing keys.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..defense import Defense
from ..embedding import Head, apply_head, model_head
from ..errors import UserError
from ..files import save_atomic
from ..readback import Damage
from ..schedules import DefenseParamSchedule, LRSchedule
from . import distributed
from .checkpoint_check import check_checkpoint, check_header
from .config import RUNTIME_KEYS, TRAIN_PARAMS, TrainConfig
from .logging import Meter

__all__ = ["CHECKPOINT_FORMAT", "TrainState", "final_checkpoint", "global_rng_state", "preserve_global_rng",
           "seed_global", "set_global_rng_state", "to_cpu", "trained_head"]

CHECKPOINT_FORMAT = "robustreg-train/2"
_READABLE = (CHECKPOINT_FORMAT, "robustreg-train/1")  # /1: no meters (they restart empty on resume)


# --- the global RNGs --------------------------------------------------------------------------------

def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(state: Mapping[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["kind"], keys, state["pos"], state["has_gauss"], state["gauss"]))


def _python_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": int(version), "state": list(internal), "gauss": gauss}


def _set_python_state(state: Mapping[str, Any]) -> None:
    random.setstate((state["version"], tuple(state["state"]), state["gauss"]))


def global_rng_state() -> dict[str, Any]:
    """torch CPU (and initialised CUDA), numpy and python ``random`` states, weights_only-safe."""
    state = {"torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": _python_state(), "cuda": []}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_global_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    _set_numpy_state(state["numpy"])
    _set_python_state(state["python"])


@contextmanager
def preserve_global_rng() -> Iterator[None]:
    """The caller's global RNG states come back when the block ends."""
    saved = global_rng_state()
    try:
        yield
    finally:
        set_global_rng_state(saved)


def seed_global(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --- helpers ----------------------------------------------------------------------------------------

def to_cpu(obj: Any) -> Any:
    """Tensors in (nested dicts/lists/tuples of) ``obj`` detached and on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def trained_head(defense: Defense, model: nn.Module) -> tuple[nn.Module, Head | None]:
    """The model with the head it is trained through, and that head (None: its own ``W z + b``).

    The defense's :meth:`~robustreg.Defense.head` when it declares one, else the head the model already has
    (loaded with its ``weights``): training on from a cosine-head checkpoint keeps the cosine head.
    """
    head = defense.head()
    if head is None:
        head = model_head(model)
    if head is not None and head.is_linear:
        head = None
    return apply_head(model, head), head


def final_checkpoint(state_dict: dict[str, Any], head: Head | None) -> dict[str, Any]:
    """What ``final.pt`` holds: the plain state dict, or ``{"state_dict": ..., "head": {...}}`` with a head."""
    return state_dict if head is None else {"state_dict": state_dict, "head": head.to_dict()}


def _normalised(values: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so tuples/lists and int/float spellings compare as they were saved."""
    return json.loads(json.dumps(dict(values), sort_keys=True, default=str))


def _first_sentence(exc: BaseException, width: int = 100) -> str:
    """The first sentence of an error's message, on one line (torch's load errors run on for lines)."""
    text = " ".join(str(exc).split()).split(". ")[0].rstrip(".")
    return (text if len(text) <= width else text[: width - 3] + "...") or type(exc).__name__


#: what a key an older checkpoint lacks meant, where that is not the key's declared default (no lr warm-up
#: before ``lr_warmup_epochs``; its None is resolved to a number before a checkpoint is written)
_ABSENT_MEANT: dict[str, Any] = {"lr_warmup_epochs": 0.0}


def _config_diff(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The differing keys; a key a checkpoint of an older robustreg lacks counts as its declared default."""
    defaults = _normalised({**{p.name: p.default for p in TRAIN_PARAMS}, **_ABSENT_MEANT})
    saved = {**{k: v for k, v in defaults.items() if k not in saved and k in now}, **saved}
    keys = sorted((set(saved) | set(now)) - RUNTIME_KEYS)
    return [f"{k}: {saved.get(k, '<absent>')!r} in the checkpoint, {now.get(k, '<absent>')!r} now"
            for k in keys if saved.get(k, "<absent>") != now.get(k, "<absent>")]


def _damaged(check: Callable[[Mapping[str, Any]], None], state: Mapping[str, Any], origin: str) -> None:
    """``check(state)`` (:mod:`.checkpoint_check`); what it finds is one line naming the checkpoint."""
    try:
        check(state)
    except Damage as exc:
        raise UserError(f"checkpoint {origin}: {exc}; delete it to start over or use another --out") from None


# --- the state --------------------------------------------------------------------------------------

@dataclass
class TrainState:
    """One run's complete state (see the module docstring); ``step`` counts optimizer steps done.

    ``elapsed``: seconds trained before this process's clock started (:meth:`seconds` adds this
    process's).  ``window`` / ``epoch_meter``: the sums behind the next step and epoch records.
    ``head``: the prediction head the model is trained through (:func:`trained_head`), recorded in the
    checkpoint.  ``param_schedule``: the defense's parameters over training (eps warm-up, milestones), a
    pure function of ``step`` rebuilt from the config, so it needs no place in the checkpoint.
    Under DDP every rank holds one; :meth:`state_dict` and :meth:`save` are collective.
    """

    config: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    defense: Defense
    generator: torch.Generator
    steps_per_epoch: int
    total_steps: int
    scaler: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    world_size: int = 1
    rank: int = 0
    step: int = 0
    perm: torch.Tensor | None = None
    elapsed: float = 0.0
    window: Meter = field(default_factory=Meter)
    epoch_meter: Meter = field(default_factory=Meter)
    clock: float = field(default_factory=time.perf_counter)
    head: Head | None = None
    param_schedule: DefenseParamSchedule | None = None

    # .. position ..
    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps

    def seconds(self) -> float:
        """Seconds trained, earlier runs included."""
        return self.elapsed + time.perf_counter() - self.clock

    def start_clock(self) -> None:
        self.clock = time.perf_counter()

    def order(self, n: int) -> torch.Tensor:
        """The epoch's data order: drawn from the generator at each epoch start, kept mid-epoch."""
        pos = self.step % self.steps_per_epoch
        if pos == 0 or self.perm is None:
            if pos != 0:
                raise RuntimeError("internal error: mid-epoch without the epoch's data order")
            self.perm = torch.randperm(n, generator=self.generator)
        return self.perm

    # .. checkpointing ..
    def _rank_state(self) -> dict[str, Any]:
        return {"rng": global_rng_state(), "defense": to_cpu(self.defense.state_dict()),
                "meters": {"window": self.window.state_dict(), "epoch": self.epoch_meter.state_dict()}}

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: plain, weights_only-safe values.  Collective under DDP (gathers every rank's RNGs,
        defense state and meters); every rank gets the same dict."""
        ranks = distributed.all_gather_objects(self._rank_state(), self.world_size)
        step = self.step
        return {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "config": _normalised(self.config.to_dict()),
            "step": step,
            "epoch": self.epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "world_size": self.world_size,
            "model": to_cpu(self.model.state_dict()),
            "head": self.head.to_dict() if self.head is not None else None,
            "optimizer": to_cpu(self.optimizer.state_dict()),
            "scheduler": {"name": self.schedule.name, "step": step, "last_lr": self.schedule(max(step - 1, 0))},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "data": {"generator": self.generator.get_state(),
                     "perm": self.perm.clone() if self.perm is not None and step % self.steps_per_epoch else None},
            "ranks": ranks,
            "elapsed": self.seconds(),
        }

    def save(self, path: Path) -> None:
        """Write :meth:`state_dict` atomically (rank 0; every rank must call it)."""
        state = self.state_dict()
        if self.rank == 0:
            save_atomic(state, path)
        distributed.barrier(self.world_size)

    def _check(self, state: Any, origin: str) -> None:
        if not isinstance(state, dict) or state.get("format") not in _READABLE:
            raise ValueError(f"{origin} is not a robustreg training checkpoint (format {CHECKPOINT_FORMAT!r})")
        _damaged(check_header, state, origin)
        diff = _config_diff(state["config"], _normalised(self.config.to_dict()))
        if diff:
            raise ValueError(f"{origin} was written by a different configuration; refusing to resume "
                             f"({'; '.join(diff)}). Use another --out, or delete {origin} to start over")
        if state["world_size"] != self.world_size:
            raise ValueError(f"{origin} was written with world size {state['world_size']}, now {self.world_size}; "
                             f"exact resume needs the same number of processes")
        recorded = state.get("head")
        if recorded is not None and Head.from_dict(recorded, origin=origin) != self.head:
            now = self.head.describe() if self.head is not None else "linear (W z + b)"
            raise ValueError(f"{origin} was trained with the head {Head.from_dict(recorded).describe()}, now {now}")
        if state["total_steps"] != self.total_steps:
            raise ValueError(f"{origin} was written for {state['total_steps']} steps, now {self.total_steps} "
                             "(different data?)")
        _damaged(lambda saved: check_checkpoint(saved, self), state, origin)

    def load_state_dict(self, state: Mapping[str, Any], *, origin: str = "the checkpoint") -> None:
        """Continue from ``state`` (a :meth:`state_dict`); another configuration is refused (ValueError)."""
        self._check(state, origin)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        mine = state["ranks"][self.rank]
        self.defense.load_state_dict(mine["defense"])
        self.generator.set_state(state["data"]["generator"])
        set_global_rng_state(mine["rng"])
        meters = mine.get("meters")
        if meters is not None:
            self.window.load_state_dict(meters["window"], self.device)
            self.epoch_meter.load_state_dict(meters["epoch"], self.device)
        self.step = int(state["step"])
        self.perm = state["data"]["perm"]
        self.elapsed = float(state["elapsed"])
        self.start_clock()

    def resume(self, path: Path) -> None:
        """:meth:`load_state_dict` of the checkpoint at ``path``, read with ``weights_only=True``; a
        truncated or corrupted file is a one-line ValueError naming it."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # zip, pickle and OS errors alike: the checkpoint cannot be read back
            reason = _first_sentence(exc)
            raise ValueError(f"checkpoint {path} cannot be read (truncated or corrupted? {reason}); delete it "
                             f"to start over or use another --out") from exc
        self.load_state_dict(state, origin=str(path))
