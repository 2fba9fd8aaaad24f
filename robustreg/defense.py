"""The Defense contract: a training objective over one batch.

A defense is built from the registry by name with its own keyword parameters.  The trainer calls
``defense.loss(model, x, y, step=...)`` on every batch, with the model in train mode; the defense
makes whatever adversarial examples it needs (through attacks, or its own inner loop), and returns
a :class:`DefenseOutput`: the scalar loss to back-propagate and the numbers worth logging.  A
defense that carries state between batches (FreeAT's replayed perturbation, a cascade store's
position) exposes it through ``state_dict`` / ``load_state_dict`` so that a resumed run is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from .attack import ModelState

__all__ = ["Defense", "DefenseInfo", "DefenseOutput", "crafting", "unwrap"]


@dataclass(frozen=True)
class DefenseInfo:
    """What a defense is: its paper, whether it is single-step, whether it needs the embedding."""

    source: str = ""
    paper: str | None = None
    single_step: bool = False
    needs_embedding: bool = False
    summary: str = ""


@dataclass
class DefenseOutput:
    """``loss``: the scalar to minimise.  ``metrics``: floats to log (loss terms, accuracies).

    ``logits_clean`` / ``logits_adv`` are optional, for the trainer's batch accuracies.
    """

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    logits_clean: torch.Tensor | None = None
    logits_adv: torch.Tensor | None = None


class Defense:
    """Base class of every defense.  Subclasses set ``info`` and implement :meth:`loss`."""

    info: ClassVar[DefenseInfo]
    name: ClassVar[str] = ""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State carried between batches (tensors and plain values); empty for most defenses."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got keys {sorted(state)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --- helpers for defenses that craft adversarial examples inside ``loss`` ------------------------
def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel (attacks must not trigger DDP's sync)."""
    inner = getattr(model, "module", None)
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) and isinstance(inner, nn.Module):
        return inner
    return model


@contextmanager
def crafting(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, frozen parameters and grad enabled while a defense crafts its examples; all restored after.

    Yields the unwrapped model (DDP's ``.module``) to attack, so crafting neither updates BatchNorm
    statistics nor fills parameter gradients nor triggers DDP's gradient sync.
    """
    state = ModelState(model)
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.enable_grad():
            yield unwrap(model)
    finally:
        state.restore()
