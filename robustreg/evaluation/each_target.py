"""One batch attacked toward each of several targets in turn (all-classes), judged as one.

:func:`attack_each_target` runs :func:`robustreg.verdict.attack_and_judge` once per target tensor, each
run on the points no earlier target reached (AutoAttack's targeted loop does the same), and merges the
runs into one :class:`~robustreg.verdict.Judged`, so the engine records it like any other batch.  A
point's adversarial point, distance, non-finite flag and per-sample extras are those of the last run it
took part in (the run that reached its target, or the last target's); its queries and its forward and
backward passes (and any extra the attack declares summed) add up over the runs; flags are collected;
another scalar extra keeps the last run's value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..attack import PASS_EXTRAS, Attack, AttackResult
from ..threat import ThreatModel
from ..verdict import Judged, attack_and_judge

__all__ = ["attack_each_target"]

Context = Callable[[], "AbstractContextManager[object] | None"]


def _per_sample(value: Any, count: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == count


@dataclass
class _Merged:
    """The runs so far over the batch's n points (``broken``, ``distance``, ``nonfinite`` on the CPU)."""

    first: Judged
    extras: dict[str, Any] = field(default_factory=dict)
    queries: torch.Tensor | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        n = self.first.broken.shape[0]
        result = self.first.result
        self.extras = {key: value.clone() if isinstance(value, torch.Tensor) else value
                       for key, value in result.extras.items()}
        if result.queries is not None:
            self.queries = torch.as_tensor(result.queries).detach().to("cpu", torch.float64).reshape(-1).expand(n)
            self.queries = self.queries.clone()
        self.seconds = self.first.seconds

    def add(self, idx: torch.Tensor, run: Judged) -> None:
        """Merge a run on the points ``idx`` (CPU) of the batch."""
        first, count = self.first, idx.numel()
        first.broken[idx], first.distance[idx], first.nonfinite[idx] = run.broken, run.distance, run.nonfinite
        first.result.x_adv[idx.to(first.result.x_adv.device)] = run.result.x_adv
        if first.x_adv is not None and run.x_adv is not None:  # the judged points, what save_adv keeps
            first.x_adv[idx.to(first.x_adv.device)] = run.x_adv
        self.seconds += run.seconds
        if run.result.queries is not None and self.queries is not None:
            self.queries[idx] += torch.as_tensor(run.result.queries).detach().to("cpu", torch.float64).reshape(-1)
        for key, value in run.result.extras.items():
            self._extra(key, value, idx, count, run.result)

    def _extra(self, key: str, value: Any, idx: torch.Tensor, count: int, result: AttackResult) -> None:
        summed = key in PASS_EXTRAS or result.reduction(key) == "sum"
        held = self.extras.get(key)
        if key == "flags":
            mine = [held] if isinstance(held, str) else list(held or ())
            new = [value] if isinstance(value, str) else list(value or ())
            self.extras[key] = mine + [flag for flag in new if flag not in mine]
        elif _per_sample(value, count):
            if not (isinstance(held, torch.Tensor) and held.shape[1:] == value.shape[1:]):
                self.extras.pop(key, None)  # runs that disagree on its shape: nothing to merge it into
                return
            rows = idx.to(held.device)
            part = value.detach().to(held.device, held.dtype)
            held[rows] = held[rows] + part if summed else part
        elif summed and isinstance(held, (int, float)) and isinstance(value, (int, float)):
            self.extras[key] = held + value
        else:
            self.extras[key] = value

    def judged(self) -> Judged:
        first = self.first
        result = AttackResult(first.result.x_adv, self.queries, self.extras, dict(first.result.reductions))
        return Judged(first.broken, first.distance, first.nonfinite, result, self.seconds, first.x_adv)


def attack_each_target(attack: Attack, attacked: nn.Module, judge_model: nn.Module, threat: ThreatModel,
                       x: torch.Tensor, y: torch.Tensor, targets: Sequence[torch.Tensor], *, label: str,
                       context: Context) -> Judged:
    """Attack ``x`` toward ``targets[0]``, then each later target on the points still standing; broken when
    any target is reached (``context()``: a fresh context for each run, e.g. the autocast, or None).
    ``x``, ``y`` and the targets are on the model's device; one target is one :func:`attack_and_judge`."""
    first = attack_and_judge(attack, attacked, judge_model, threat, x, y, label=label, context=context(),
                             target=targets[0])
    if len(targets) == 1:
        return first
    merged = _Merged(first)
    for target in targets[1:]:
        todo = (~first.broken).nonzero().flatten()
        if todo.numel() == 0:
            break
        rows = todo.to(x.device)
        run = attack_and_judge(attack, attacked, judge_model, threat, x[rows], y[rows], label=label,
                               context=context(), target=target[rows])
        merged.add(todo, run)
    return merged.judged()
