"""Learning-rate schedules of the trainer, as pure functions of the optimizer step.

The trainer sets ``lr = schedule(step)`` on every parameter group before optimizer step ``step``
(0-based), so a schedule has no state of its own and a resumed run needs nothing but the step.

- ``"step"``: ``lr * gamma ** (number of milestones <= step)``; milestones are given in epochs or in
  iterations (``milestone_unit``).  Paper 000 (Na et al., 2018, arXiv 1708.02582) on CIFAR-10:
  ``lr=0.1, milestones=[48000, 72000], milestone_unit="iterations", iterations=94000``.  Paper 004
  (Xu et al., SI): ``lr=0.01, milestones=[75, 90, 100], milestone_unit="epochs", epochs=120``.
- ``"cosine"``: ``lr * (1 + cos(pi * step / total)) / 2``, from ``lr`` at step 0 towards 0.
- ``"cyclic"``: the one-cycle schedule of fast adversarial training (Wong et al., 2020,
  arXiv 2001.03994): linear from 0 up to ``lr`` at ``peak`` (fraction of training, default 0.4), then
  linear down to 0 at the end, evaluated at ``(step + 1) / total`` as in the authors' code (the
  first step runs with a small positive lr, the last one with lr 0).
- ``"constant"``: ``lr``.

``warmup_steps`` > 0 multiplies any of them by ``min(1, (step + 1) / warmup_steps)``: a linear lr
warm-up (Goyal et al., 2017, arXiv 1706.02677) that reaches the schedule's value on the last warm-up
step.  Nets whose first steps at the full lr wreck them (hypersphere-embedding heads on BatchNorm-free
nets) need it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SCHEDULES", "LRSchedule"]

SCHEDULES = ("step", "cosine", "cyclic", "constant")
MILESTONE_UNITS = ("epochs", "iterations")


@dataclass(frozen=True)
class LRSchedule:
    """``schedule(step) -> lr`` for ``total_steps`` optimizer steps of ``steps_per_epoch`` each epoch."""

    lr: float
    total_steps: int
    steps_per_epoch: int
    name: str = "step"
    milestones: tuple[float, ...] = ()
    milestone_unit: str = "epochs"
    gamma: float = 0.1
    peak: float = 0.4
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.name!r}")
        if self.milestone_unit not in MILESTONE_UNITS:
            raise ValueError(f"milestone_unit must be one of {', '.join(MILESTONE_UNITS)}, got {self.milestone_unit!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps!r}")
        if self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if not 0 < self.peak < 1:
            raise ValueError(f"cyclic peak must be in (0, 1) (a fraction of training), got {self.peak!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        bad = [m for m in self.milestones if not (isinstance(m, (int, float)) and m > 0)]
        if bad:
            raise ValueError(f"milestones must be positive numbers, got {list(self.milestones)!r}")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {list(self.milestones)!r}")

    @classmethod
    def create(
        cls,
        name: str,
        *,
        lr: float,
        total_steps: int,
        steps_per_epoch: int,
        milestones: Sequence[float] = (),
        milestone_unit: str = "epochs",
        gamma: float = 0.1,
        peak: float = 0.4,
        warmup_steps: int = 0,
    ) -> LRSchedule:
        return cls(float(lr), int(total_steps), int(steps_per_epoch), name, tuple(milestones), milestone_unit,
                   float(gamma), float(peak), int(warmup_steps))

    def milestone_steps(self) -> list[int]:
        """Milestones converted to optimizer steps (epoch ``e`` starts at step ``e * steps_per_epoch``)."""
        scale = self.steps_per_epoch if self.milestone_unit == "epochs" else 1
        return [int(round(m * scale)) for m in self.milestones]

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.warmup_steps and step < self.warmup_steps:
            return self._base(step) * (step + 1) / self.warmup_steps
        return self._base(step)

    def _base(self, step: int) -> float:
        if self.name == "constant":
            return self.lr
        if self.name == "step":
            passed = sum(1 for m in self.milestone_steps() if step >= m)
            return self.lr * self.gamma**passed
        if self.name == "cosine":
            t = min(step, self.total_steps) / self.total_steps
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * t))
        t = min(step + 1, self.total_steps) / self.total_steps  # cyclic
        if t <= self.peak:
            return self.lr * t / self.peak
        return self.lr * (1.0 - t) / (1.0 - self.peak)


# --- the defense's parameters over training -----------------------------------------------------------
PIXEL_UNIT = "pixels"


@dataclass(frozen=True)
class DefenseParamSchedule:
    """The values the trainer gives a defense's declared parameters before optimizer step ``step``.

    Two parts, both pure functions of the step (so a resumed run needs nothing but the step):

    - **eps warm-up** (``warmup_steps`` > 0): every parameter in pixel units (``eps``, ``step_size``,
      GAT's ``noise``, paper 000's ``max_eps`` ...) is ``base * min(1, (step + 1) / warmup_steps)``: a
      linear ramp that reaches the configured values on the last warm-up step (a common remedy when
      PGD-AT at a large eps sits at chance for epochs, e.g. 0.2 on digits).
    - **multiplicative milestones** (``milestones``: ``{name: ((step, factor), ...)}``): ``base``
      times the product of the factors of the milestones reached (``step >= milestone``).  GAT's
      authors multiply lambda by 4 at epoch 85 of 100: ``{"lam": ((85 * steps_per_epoch, 4.0),)}``.

    ``base``: the values the defense was built with (its constructor's, read once before training).
    """

    base: tuple[tuple[str, float], ...]
    warmup: tuple[str, ...] = ()
    warmup_steps: int = 0
    milestones: tuple[tuple[str, tuple[tuple[int, float], ...]], ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.warmup_steps and self.warmup) or bool(self.milestones)

    def warmup_factor(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, (step + 1) / self.warmup_steps)

    def __call__(self, step: int) -> dict[str, float]:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        base = dict(self.base)
        values: dict[str, float] = {}
        ramp = self.warmup_factor(step)
        for name in self.warmup:
            values[name] = base[name] * ramp
        for name, points in self.milestones:
            factor = math.prod(f for at, f in points if step >= at)
            values[name] = values.get(name, base[name]) * factor
        return values
