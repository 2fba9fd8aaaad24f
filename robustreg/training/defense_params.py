"""The trainer's schedule of a defense's declared parameters: the eps warm-up and multiplicative milestones.

``eps_warmup_epochs`` ramps every parameter the defense declares in pixel units (eps, step_size, GAT's
noise, paper 000's max_eps, ...) linearly up to its configured value; ``defense_schedule`` multiplies named
parameters by a factor from a milestone on (GAT's lambda x 4 at epoch 85).  Both are
:class:`robustreg.schedules.DefenseParamSchedule`, a pure function of the step: before every step the
trainer hands the defense the values it gives as a :meth:`robustreg.Defense.with_values` copy (a composed
mechanism that declares the name gets its own copy), never by setting them on the live defense, so a
resumed run gets the same values at the same step and stays exact.  The defense's ``config`` keeps the
values it was built with.
"""

from __future__ import annotations

import math
from typing import Any

from ..defense import Defense
from ..params import ParamError
from ..schedules import PIXEL_UNIT, DefenseParamSchedule
from .config import TrainConfig

__all__ = ["build_param_schedule", "scheduled_defense"]


def _declared(defense: Defense) -> dict[str, Any]:
    """name -> Param of everything the defense and its mechanisms declare."""
    params = {p.name: p for p in defense.declaration()}
    for mech in defense.mechanisms:
        params.update({p.name: p for p in mech.params})
    return params


def _number(defense: Defense, name: str) -> float | None:
    value = getattr(defense, name, None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def build_param_schedule(defense: Defense, config: TrainConfig, steps_per_epoch: int) -> DefenseParamSchedule | None:
    """The schedule ``config`` asks for (None: neither ``eps_warmup_epochs`` nor ``defense_schedule``)."""
    if not config.eps_warmup_epochs and not config.defense_schedule:
        return None
    declared = _declared(defense)
    base: dict[str, float] = {}
    warmup: list[str] = []
    if config.eps_warmup_epochs:
        for name, param in declared.items():
            value = _number(defense, name)
            if param.unit.startswith(PIXEL_UNIT) and value is not None:
                warmup.append(name)
                base[name] = value
        if not warmup:
            raise ParamError(f"eps_warmup_epochs={config.eps_warmup_epochs}: the defense {config.defense!r} declares "
                             "no parameter in pixel units (eps, step_size, ...) to warm up")
    scale = steps_per_epoch if config.milestone_unit == "epochs" else 1
    milestones = []
    for name, points in config.defense_schedule.items():
        value = _number(defense, name)
        if name not in declared or value is None:
            numeric = sorted(n for n in declared if _number(defense, n) is not None)
            raise ParamError(f"defense_schedule: {name!r} is not a numeric parameter of the defense {config.defense!r}"
                             f" (numeric parameters: {', '.join(numeric) or 'none'})")
        base[name] = value
        milestones.append((name, tuple((int(round(at * scale)), float(f)) for at, f in points)))
    return DefenseParamSchedule(tuple(sorted(base.items())), tuple(warmup),
                                int(round(config.eps_warmup_epochs * steps_per_epoch)), tuple(milestones))


def scheduled_defense(defense: Defense, schedule: DefenseParamSchedule | None, step: int) -> Defense:
    """The defense to train step ``step`` with: ``defense`` itself when the schedule changes nothing, else its
    :meth:`~robustreg.Defense.with_values` copy with the schedule's values (``defense`` is left as it is)."""
    if schedule is None:
        return defense
    values = schedule(step)
    if all(getattr(defense, name, None) == value for name, value in values.items()):
        return defense  # after the warm-up and between milestones: no copy per step
    return defense.with_values(**values)
