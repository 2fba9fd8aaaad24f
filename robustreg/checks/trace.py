"""Projected gradient ascent that records what two checks read: the loss per step, points broken on the way.

The extras contract: an attack that returns an :class:`~robustreg.AttackResult` with
``extras["loss_trace"]`` feeds ``incomplete-optimization``: per attacked point, its loss at the start
and after each step (N x (steps + 1)), or one 1-D mean trace; with ``extras["ever_broken"]`` (bool per
attacked point: misclassified at the start or after some step) it feeds ``silent-success``.
:func:`traced_ascent` gives both from the forwards it makes anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..ascent import pgd_steps
from ..threat import ThreatModel

__all__ = ["LossFn", "Trace", "traced_ascent"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, y) -> per-sample loss to maximise


@dataclass
class Trace:
    """:func:`traced_ascent`'s result.

    ``x_adv``: the last iterate; ``x_best``: per sample the first misclassified iterate, else the last
    one (what an attack should return); ``loss_trace``: N x (steps + 1) per-sample losses (at the start,
    then after each step); ``ever_broken``: bool N, misclassified at the start or after some step.
    """

    x_adv: torch.Tensor
    x_best: torch.Tensor
    loss_trace: torch.Tensor
    ever_broken: torch.Tensor

    def extras(self) -> dict[str, torch.Tensor]:
        """The two extras the checks read, to put in an :class:`~robustreg.AttackResult`'s ``extras``."""
        return {"loss_trace": self.loss_trace.cpu(), "ever_broken": self.ever_broken.cpu()}


def traced_ascent(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, loss: LossFn,
                  steps: int, step_size: float, x_start: torch.Tensor | None = None) -> Trace:
    """:func:`~robustreg.pgd_steps` on ``loss(model(x_adv), y).sum()``, recording from its own forwards.

    ``loss`` returns the per-sample loss to maximise; ``x_start`` defaults to ``x`` (no random start).
    One forward more than ``pgd_steps`` (the last iterate's), no host syncs.  Untargeted: "broken"
    means ``argmax != y``.  Example::

        trace = traced_ascent(model, x, y, threat, loss=lambda z, t: F.cross_entropy(z, t, reduction="none"),
                              steps=20, step_size=threat.eps / 4)
        return AttackResult(trace.x_best, extras=trace.extras())
    """
    rows: list[torch.Tensor] = []
    ever = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    first = x.detach().clone()
    view = (-1,) + (1,) * (x.dim() - 1)

    def record(x_adv: torch.Tensor) -> torch.Tensor:
        nonlocal ever, first
        logits = model(x_adv)
        values = loss(logits, y)
        rows.append(values.detach().float())
        broken = logits.detach().argmax(dim=1) != y
        first = torch.where((broken & ~ever).view(view), x_adv.detach(), first)
        ever = ever | broken
        return values.sum()

    x_adv = pgd_steps(record, x, x if x_start is None else x_start, threat, steps=steps, step_size=step_size)
    with torch.no_grad():
        record(x_adv)
    return Trace(x_adv, torch.where(ever.view(view), first, x_adv), torch.stack(rows, dim=1), ever)
