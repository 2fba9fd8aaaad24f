"""The one verdict: is a sample broken?  And the one "attack a batch and judge it" every front-end runs.

A sample is broken when the model itself, run on the adversarial point in float32, predicts another
class than the label, or returns a row holding a NaN or inf (such a row has no meaningful argmax; its
argmax would be 0 and count class 0 as right).  Targeted (``target=``): broken when it predicts the
target class (a non-finite row still counts as broken).  The attack's own success flags are never trusted:
:func:`attack_and_judge` checks the point is inside the threat, then asks the model (or a caller's
:class:`Verdict`: the remedies' majority rule for a randomised model); :func:`attack_each_target` runs it
toward each of several targets in turn.  ``evaluate``'s cells, ``compare``'s rows, the curve's verifiers
and the remedies all judge through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from .attack import PASS_EXTRAS, Attack, AttackError, AttackResult, within_eps
from .threat import ThreatModel

__all__ = ["Judged", "Verdict", "attack_and_judge", "attack_each_target", "broken_rows", "clean_correct", "judge",
           "nonfinite_rows"]


class Verdict(Protocol):
    """(model, x_adv, y) -> broken (bool N); with ``target`` (a targeted run's only): broken when the target is
    reached.  An untargeted run calls it without ``target``.  Another rule than :func:`judge`'s argmax, e.g. the
    majority of several forwards of a randomised model (:func:`robustreg.remedies.majority`)."""

    def __call__(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor,
                 target: torch.Tensor | None = None) -> torch.Tensor: ...


def nonfinite_rows(logits: torch.Tensor) -> torch.Tensor:
    """Per row: does it hold a NaN or an inf (then it has no meaningful argmax)?"""
    return ~torch.isfinite(logits).all(dim=1)


def broken_rows(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per row: a wrong argmax, or a non-finite row (never a correct prediction)."""
    return (logits.argmax(dim=1) != y) | nonfinite_rows(logits)


def clean_correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample: the clean prediction is right (CPU bool tensor); the negation of :func:`broken_rows`."""
    logits = logits.detach().cpu()
    return ~broken_rows(logits, y.cpu())


def judge(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor,
          target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's verdict on adversarial points, in float32 without gradients: (broken, non-finite rows).

    Broken: predicted as another class than ``y``; with ``target``, predicted as the target (a targeted
    attack that only pushes a point off its label has not succeeded)."""
    with torch.no_grad():
        logits = model(x_adv).float()
    bad = nonfinite_rows(logits)
    pred = logits.argmax(dim=1)
    return (pred != y if target is None else pred == target) | bad, bad


@dataclass
class Judged:
    """One attacked batch as the model judged it (``broken``, ``distance``, ``nonfinite`` on the CPU); ``x_adv``:
    the points judged (on the model's device; a minimal-norm attack's read at eps), what ``save_adv`` keeps."""

    broken: torch.Tensor
    distance: torch.Tensor
    nonfinite: torch.Tensor
    result: AttackResult
    seconds: float
    x_adv: torch.Tensor | None = None


def attack_and_judge(attack: Attack, attacked: nn.Module, judge_model: nn.Module, threat: ThreatModel,
                     x: torch.Tensor, y: torch.Tensor, *, label: str,
                     context: AbstractContextManager[object] | None = None,
                     target: torch.Tensor | None = None, verdict: Verdict | None = None) -> Judged:
    """Run ``attack`` on ``attacked`` (timed, inside ``context``), read a minimal-norm attack's point at the
    threat's eps (:func:`robustreg.attack.within_eps`), refuse a point outside the threat, and judge every
    point with ``judge_model`` (:func:`judge`, or ``verdict``: then ``nonfinite`` is not computed and reads
    False).  ``x``, ``y`` and ``target`` (a targeted run: the attack gets it, and broken means predicted as it)
    are on the model's device."""
    start = time.perf_counter()
    with context if context is not None else nullcontext():
        result = attack.run(attacked, x, y, target=target)
    seconds = time.perf_counter() - start
    x_adv = within_eps(threat, result.x_adv, x) if attack.info.minimal_norm else result.x_adv
    if not bool(threat.contains(x_adv, x).all()):  # the base checks this too; never trust an attack
        raise AttackError(f"attack {label!r} returned points outside {threat.describe()}")
    if verdict is None:
        broken, bad = judge(judge_model, x_adv, y, target)
    else:
        broken = verdict(judge_model, x_adv, y) if target is None else verdict(judge_model, x_adv, y, target)
        bad = torch.zeros_like(broken)
    return Judged(broken.cpu(), threat.distance(x_adv, x).float().cpu(), bad.cpu(), result, seconds, x_adv)


# --- one batch toward each of several targets ---------------------------------------------------------
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
                       x: torch.Tensor, y: torch.Tensor, targets: Sequence[torch.Tensor | None], *, label: str,
                       context: Context, verdict: Verdict | None = None) -> Judged:
    """One batch attacked toward each of several targets in turn (all-classes), judged as one.

    Attack ``x`` toward ``targets[0]`` (None: untargeted), then each later target on the points still
    standing (AutoAttack's targeted loop does the same); broken when any target is reached (``context()``: a
    fresh context for each run, e.g. the autocast, or None; ``verdict``: as :func:`attack_and_judge`'s).
    ``x``, ``y`` and the targets are on the model's device; one target is one :func:`attack_and_judge`.

    The runs merge into one :class:`Judged`, recorded like any other batch.  A point's adversarial point,
    distance, non-finite flag and per-sample extras are those of the last run it took part in (the run that
    reached its target, or the last target's); its queries and its forward and backward passes (and any
    extra the attack declares summed) add up over the runs; flags are collected; another scalar extra keeps
    the last run's value."""
    first = attack_and_judge(attack, attacked, judge_model, threat, x, y, label=label, context=context(),
                             target=targets[0], verdict=verdict)
    if len(targets) == 1:
        return first
    merged = _Merged(first)
    for target in targets[1:]:
        todo = (~first.broken).nonzero().flatten()
        if todo.numel() == 0:
            break
        rows = todo.to(x.device)
        run = attack_and_judge(attack, attacked, judge_model, threat, x[rows], y[rows], label=label,
                               context=context(), target=None if target is None else target[rows], verdict=verdict)
        merged.add(todo, run)
    return merged.judged()
