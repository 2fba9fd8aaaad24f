"""Crafting for the front-ends that measure the adversarial points themselves (the analyses).

:func:`craft` runs every cell of a plan through the engine's :class:`~.run.Runner` (a
:class:`~.run.ShardedRunner` over the ranks of a torchrun group) on the points asked for -- all n by
default, the clean mistakes too -- each attack alone (independent mode), judged as ``evaluate`` judges.
Each attacked batch's adversarial points (a minimal-norm attack's read at the cell's eps) go to a sink
as soon as the batch is judged; the returned :class:`~.state.RunState` holds the per-sample records
(broken, distance, passes).  Over several ranks a sink sees only its rank's batches, and the records
are every rank's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..attack import Attack
from ..data.source import as_images
from ..threat import ThreatModel
from .adversarial import AdversarialSink
from .config import AttackPlan, Mode, Plan
from .distributed import SINGLE, Group
from .run import Runner, ShardedRunner
from .state import RunState

__all__ = ["craft", "craft_attack"]


def craft(model: nn.Module, x: Any, y: torch.Tensor, plan: Plan, device: torch.device,
          sink: AdversarialSink | None = None, *, points: torch.Tensor | None = None, group: Group = SINGLE,
          progress: bool = False) -> tuple[RunState, float]:
    """Every cell of ``plan`` on ``points`` (bool n; default every sample) against ``model`` (in the mode to
    attack it in, on ``device``), in ``plan``'s batches over the chosen points.  ``sink.add(e, a, k, idx,
    x_adv)`` (if given) gets batch ``k`` of cell ``(e, a)`` (``idx``: sample indices, CPU).  ``progress``: a
    bar over the attacked points (on the main rank).  Returns the records and the seconds this rank waited for
    the others (0.0 for one process)."""
    n = int(y.shape[0])
    chosen = torch.ones(n, dtype=torch.bool) if points is None else points.detach().cpu().bool()
    if chosen.shape != (n,):
        raise ValueError(f"points must be a bool tensor of shape ({n},), got shape {tuple(chosen.shape)}")
    state = RunState({}, chosen)
    independent = replace(plan, mode=Mode.INDEPENDENT)  # each attack on every chosen point
    images = as_images(x)
    bar = (tqdm(total=len(plan.cells()) * int(chosen.sum()), unit="pt", leave=False, dynamic_ncols=True)
           if progress and group.is_main else None)
    try:
        if group.world_size == 1:
            Runner(model, images, y, independent, device, state, bar, adv=sink).run_all()
            return state, 0.0
        runner = ShardedRunner(model, images, y, independent, device, state, bar, adv=sink, group=group)
        runner.run_all()
        return state, runner.gather_seconds
    finally:
        if bar is not None:
            bar.close()


@dataclass(frozen=True)
class _Built:
    """An attack the caller built itself, standing where a plan holds a resolved configuration."""

    attack: Attack

    @property
    def values(self) -> Mapping[str, Any]:
        return dict(self.attack.config)

    def build(self, threat: ThreatModel) -> Attack:
        return self.attack


class _Points:
    """Every crafted batch's points, in sample order, shaped like the data."""

    def __init__(self) -> None:
        self.parts: list[tuple[torch.Tensor, torch.Tensor]] = []

    def add(self, e: int, a: int, k: int, indices: torch.Tensor, x_adv: torch.Tensor) -> None:
        self.parts.append((indices, x_adv.detach()))

    def stacked(self) -> torch.Tensor:
        order = torch.cat([idx for idx, _ in self.parts]).argsort()
        return torch.cat([x for _, x in self.parts])[order.to(self.parts[0][1].device)]


def craft_attack(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``attack`` (built by the caller, at its own threat model) on every one of the n points as one cell of the
    engine (:func:`craft`, batches of ``batch_size`` in index order, judged as ``evaluate`` judges): the
    adversarial points (a minimal-norm attack's read at its eps), shaped like ``x``."""
    if len(y) == 0:
        return x.clone()
    threat = attack.threat
    label = attack.label()
    plan = Plan([AttackPlan(label, {}, label)], [threat.eps], threat.norm, None, Mode.INDEPENDENT, batch_size, None,
                configs=(_Built(attack),))
    points = _Points()
    craft(model, x, y, plan, x.device, points)
    return points.stacked()
