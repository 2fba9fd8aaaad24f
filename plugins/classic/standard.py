"""``standard``: plain training, the baseline every defense is compared with."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import Defense, DefenseInfo, DefenseOutput, Param, ParamSet, Registrar, hookimpl

__all__ = ["StandardTraining", "register_standard"]


class StandardTraining(Defense):
    """Plain (non-adversarial) training: cross-entropy on the clean inputs.

    Paper: none (the baseline of every adversarial-training paper).  Norm: none.
    Parameters:
        label_smoothing (float, default 0.0): in [0, 1), passed to ``F.cross_entropy``.
    Input contract: the trainer's batch, float N x C x H x W in [0, 1] and int64 labels; the model is
    in train mode.  Returns the mean loss and ``logits_clean`` (for the trainer's batch accuracy).

    Example::

        robustreg train --model digits-cnn --data digits --defense standard --epochs 5 --out runs/plain
    """

    info = DefenseInfo(source="native", paper=None, single_step=False, needs_embedding=False,
                       summary="Plain training: cross-entropy on clean inputs")
    name = "standard"
    params = ParamSet([
        Param("label_smoothing", "float", 0.0, "label smoothing of the cross-entropy (F.cross_entropy's)",
              low=0, high=1, high_open=True),
    ])
    label_smoothing: float

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return DefenseOutput(loss=loss, metrics={}, logits_clean=logits)

    def __repr__(self) -> str:
        return f"StandardTraining(label_smoothing={self.label_smoothing})"


@hookimpl(specname="robustreg_register_defenses")
def register_standard(registrar: Registrar) -> None:
    """Register ``standard``; import this function into the classic plugin's ``__init__`` to enable it."""
    registrar.add_defense("standard", StandardTraining)
