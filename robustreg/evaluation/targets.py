"""Targeted evaluation: which class each sample's attack aims at, and which attacks may run so.

``targeted=None`` (the default) is the untargeted evaluation.  The three targeted modes:

- ``"random"``: per sample, a class drawn uniformly among those other than its label, from the run's
  seed and the sample's index in the evaluated data (:func:`random_targets`, a splitmix64 hash): the
  batch size, a resumed run and the torch.distributed ranks do not change it.  ``seed=None`` leaves the
  attacks nondeterministic but the targets are still drawn from seed 0, so a resumed run keeps them.
- ``"least-likely"``: the class of the lowest clean logit other than the label (the clean pass's; for a
  clean-correct point this is the clean argmin).
- ``"all-classes"``: every class other than the label, one targeted run each (a later run only on the
  points no earlier target reached); a point is broken when any target is reached.

A targeted attack succeeds when the float32 model predicts the target on its point
(:func:`robustreg.verdict.judge`); robust accuracy is then the fraction of the n samples that are
clean-correct and whose target was not reached (all-classes: no target reached).  The number of classes
is the data's when it says (``data_info["num_classes"]``), else the model's number of outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..labels import least_likely

__all__ = ["TARGETED_MODES", "Targets", "check_attacks_take_targets", "check_targeted", "least_likely_other",
           "random_targets"]

TARGETED_MODES = ("random", "least-likely", "all-classes")
_MASK = (1 << 64) - 1
_SUCCESS = "the float32 model predicts the target class (a NaN or inf logit row counts as reached)"


def check_targeted(value: Any) -> str | None:
    """``targeted`` checked: None (untargeted) or one of :data:`TARGETED_MODES`; else a one-line ValueError."""
    if value is None or (isinstance(value, str) and value in TARGETED_MODES):
        return value
    raise ValueError(f"targeted must be None (untargeted) or one of {', '.join(map(repr, TARGETED_MODES))}, "
                     f"got {value!r}")


def check_attacks_take_targets(mode: str | None, names: Sequence[str], registry: Any, norm: str) -> None:
    """Refuse, before any work, an attack a targeted evaluation cannot run: one that takes no target
    (``AttackInfo.targeted`` False) or one that picks its own targets (``AttackInfo.picks_targets``)."""
    if mode is None:
        return
    for name in names:
        info = registry.attack(name).info
        if info.picks_targets:
            raise ValueError(f"targeted={mode!r}: attack {name!r} runs its own targeted protocol (it picks the "
                             f"target classes itself and counts any misclassification), so its numbers are not "
                             f"this targeted robust accuracy; run it in an untargeted evaluation (no --targeted, "
                             f"targeted=None), where they mean what it defines")
        if not info.targeted:
            able = sorted(spec.name for spec in registry.list_attacks()
                          if spec.info.targeted and not spec.info.picks_targets and norm in spec.info.norms)
            raise ValueError(f"targeted={mode!r}: attack {name!r} does not take a target class; attacks that do "
                             f"({norm}): {', '.join(able) or 'none registered'}")


def _mix(value: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit integer (Steele et al. 2014)."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def random_targets(indices: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """Per sample: a class other than its label ``y``, uniform over the ``num_classes - 1`` others (up to a
    2^-64 bias), a function of ``seed`` and the sample's index alone (int64, CPU)."""
    key = _mix(seed & _MASK)
    offsets = [1 + _mix(key ^ int(i)) % (num_classes - 1) for i in indices.tolist()]
    return (y.cpu() + torch.tensor(offsets, dtype=torch.int64)) % num_classes


def least_likely_other(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample: the class of the lowest logit other than the label (int64, CPU).  For a clean-correct
    point this is the argmin; leaving the label out keeps a constant row from aiming at its own label."""
    scores = logits.detach().float().cpu().clone()
    scores[torch.arange(len(y)), y.cpu()] = float("inf")
    return least_likely(scores)


@dataclass(frozen=True)
class Targets:
    """The targets of one run: ``mode`` (:data:`TARGETED_MODES`), ``num_classes``, the ``seed`` of the random
    ones and, for least-likely, ``least`` (per sample of the n, CPU)."""

    mode: str
    num_classes: int
    seed: int
    least: torch.Tensor | None = None

    @classmethod
    def choose(cls, mode: str, clean_logits: torch.Tensor, y: torch.Tensor, seed: int | None,
               num_classes: int | None) -> Targets:
        """The targets of a run in ``mode`` (the class count: ``num_classes`` if the data says, else the
        logits'); fewer than 2 classes is a ValueError."""
        classes = min(int(num_classes), clean_logits.shape[1]) if num_classes else clean_logits.shape[1]
        if classes < 2:
            raise ValueError(f"targeted={mode!r} needs at least 2 classes, the model and data have {classes}")
        least = least_likely_other(clean_logits[:, :classes], y) if mode == "least-likely" else None
        return cls(mode, classes, 0 if seed is None else int(seed), least)

    def rounds(self, idx: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """The targets of samples ``idx`` (labels ``y``), one tensor per targeted run (CPU int64)."""
        y = y.cpu()
        if self.mode == "random":
            return [random_targets(idx, y, self.num_classes, self.seed)]
        if self.mode == "least-likely":
            if self.least is None:
                raise ValueError("least-likely targets come from the clean logits: make them with Targets.choose")
            return [self.least[idx.cpu()]]
        return [(y + k) % self.num_classes for k in range(1, self.num_classes)]

    def rule(self) -> str:
        """How the targets were chosen, in a sentence (report.json's ``targeted.rule``)."""
        others = f"the {self.num_classes - 1} classes other than the label (of {self.num_classes})"
        if self.mode == "random":
            return (f"one class drawn uniformly from {others}, from seed {self.seed} and the sample's index "
                    f"(splitmix64; the same for any batch size, resume or number of ranks)")
        if self.mode == "least-likely":
            return f"the class of the lowest clean logit among {others} (the clean pass's)"
        return (f"each of {others} in turn, one targeted run per class on the points no earlier class reached; "
                f"broken when any target is reached")

    def entry(self) -> dict[str, Any]:
        """report.json's ``targeted`` entry."""
        return {"mode": self.mode, "rule": self.rule(), "num_classes": self.num_classes, "success": _SUCCESS,
                "robust_accuracy": "clean-correct and target not reached"
                                   + (" (no target reached)" if self.mode == "all-classes" else "")}
