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
from .params import ParamSet

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


_RESERVED = frozenset({"info", "name", "params", "config", "loss", "state_dict", "load_state_dict", "declaration"})


class Defense:
    """Base class of every defense.

    Subclasses set ``info``, declare their parameters in ``params`` (a :class:`robustreg.ParamSet`)
    and implement :meth:`loss`.  The base validates the constructor's keyword arguments against the
    declaration (one-line errors naming the defense) and sets each as an attribute; :meth:`setup`
    may derive more.
    """

    info: ClassVar[DefenseInfo]
    name: ClassVar[str] = ""
    params: ClassVar[ParamSet] = ParamSet()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("params")
        if callable(declared) or not isinstance(cls.params, ParamSet):  # TEMPORARY: a legacy params() method
            return
        if declared is not None and not isinstance(declared, ParamSet):
            cls.params = ParamSet(declared)
        reserved = sorted(set(cls.params.names()) & _RESERVED)
        if reserved:
            raise TypeError(f"{cls.__name__} declares reserved parameter name(s) {', '.join(reserved)}")

    @classmethod
    def declaration(cls) -> ParamSet:
        return cls.params if isinstance(cls.params, ParamSet) else ParamSet()  # TEMPORARY: legacy params()

    @classmethod
    def label(cls) -> str:
        return cls.name or cls.__name__

    def __init__(self, **params: Any) -> None:
        #: the defense's parameters, validated against :attr:`params` (defaults filled in)
        self.config: dict[str, Any] = self.declaration().resolve(self.label(), params)
        for key, value in self.config.items():
            setattr(self, key, value)
        self.setup()

    def setup(self) -> None:
        """Checks across parameters and derived values, after the declared ones are set (override)."""

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
