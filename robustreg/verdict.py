"""The one verdict: is a sample broken?  And the one "attack a batch and judge it" every front-end runs.

A sample is broken when the model itself, run on the adversarial point in float32, predicts another
class than the label, or returns a row holding a NaN or inf (such a row has no meaningful argmax; its
argmax would be 0 and count class 0 as right).  Targeted (``target=``): broken when it predicts the
target class (a non-finite row still counts as broken).  The attack's own success flags are never trusted:
:func:`attack_and_judge` checks the point is inside the threat, then asks the model.  ``evaluate``'s
cells, ``compare``'s rows, the curve's verifiers and the remedies all judge through here.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from .attack import Attack, AttackError, AttackResult, within_eps
from .threat import ThreatModel

__all__ = ["Judged", "attack_and_judge", "broken_rows", "clean_correct", "judge", "nonfinite_rows"]


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
                     target: torch.Tensor | None = None) -> Judged:
    """Run ``attack`` on ``attacked`` (timed, inside ``context``), read a minimal-norm attack's point at the
    threat's eps (:func:`robustreg.attack.within_eps`), refuse a point outside the threat, and judge every
    point with ``judge_model`` (:func:`judge`).  ``x``, ``y`` and ``target`` (a targeted run: the attack gets
    it, and broken means predicted as it) are on the model's device."""
    start = time.perf_counter()
    with context if context is not None else nullcontext():
        result = attack.run(attacked, x, y, target=target)
    seconds = time.perf_counter() - start
    x_adv = within_eps(threat, result.x_adv, x) if attack.info.minimal_norm else result.x_adv
    if not bool(threat.contains(x_adv, x).all()):  # the base checks this too; never trust an attack
        raise AttackError(f"attack {label!r} returned points outside {threat.describe()}")
    broken, bad = judge(judge_model, x_adv, y, target)
    return Judged(broken.cpu(), threat.distance(x_adv, x).float().cpu(), bad.cpu(), result, seconds, x_adv)
