"""The verdict rule of the adaptive phase: one rule judges every point the remedies count, and the report
states it.

A deterministic model is judged as the evaluation judges it (:data:`~.context.ARGMAX`).  A randomised
model (two forwards of the same points differ beyond float noise) is judged by the majority of
:data:`VOTES` forwards, and so is which clean points count as correct: one noisy forward calls a point
broken, or correct, on a lucky draw, and a union of such draws over several attacks drifts below any
rule one could state.  The evaluation's own cells judged each adversarial point by one forward and keep
no adversarial point to judge again, so under the majority rule the remedies attack every point correct
under it, and only their verdicts count in the adaptive number.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.source import Images
from ..verdict import Verdict
from .context import ARGMAX, majority, misclassified

__all__ = ["VOTES", "Rule", "correct_under", "rule_for"]

#: forwards per verdict on a randomised model (odd: no ties)
VOTES = 9


@dataclass(frozen=True)
class Rule:
    """``verdict``: (model, x_adv, y[, target]) -> broken; ``text``: the rule as the report says it; ``randomised``:
    the model gave different outputs for the same points."""

    verdict: Verdict
    text: str
    randomised: bool


def rule_for(model: nn.Module, x: torch.Tensor | Images, device: torch.device, points: int = 32) -> Rule:
    """The rule for ``model``: the majority of :data:`VOTES` forwards if two forwards of the first ``points``
    of ``x`` differ (NaN equal to NaN), else the evaluation's own argmax."""
    xs = x[:points].to(device)
    with torch.no_grad():
        first, second = model(xs).float(), model(xs).float()
    # the randomized-model check's tolerance: float noise of a deterministic model is not randomness
    if torch.allclose(first, second, rtol=1e-5, atol=1e-6, equal_nan=True):
        return Rule(misclassified, ARGMAX, False)
    verdict, text = majority(VOTES)
    return Rule(verdict, text, True)


def correct_under(rule: Rule, model: nn.Module, x: torch.Tensor | Images, y: torch.Tensor, device: torch.device,
                  batch_size: int) -> torch.Tensor:
    """Per point (bool n, CPU): the clean point is correct under ``rule`` (not broken by its verdict); ``x`` is
    read a batch at a time."""
    parts = [~rule.verdict(model, x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)).cpu()
             for i in range(0, len(y), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)
