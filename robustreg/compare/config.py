"""The options of one :func:`robustreg.compare.compare` run, as :class:`CompareConfig`.

``compare(model, data, attack, eps, config=None, **options)``: ``options`` (the fields, the keywords compare
always took) replace the config's fields; the whole is checked once, here, before any model runs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..evaluation.config import ADAPTIVE_BUDGET
from ..options import flag, positive_int, seed_value
from ..threat import canonical_norm

__all__ = ["CompareConfig"]


@dataclass(frozen=True)
class CompareConfig:
    """Every option of :func:`robustreg.compare.compare` (see it for each one).

    ``toolkits`` (None: every toolkit that has the attack) and ``no_check`` are kept as tuples, ``params``
    as a plain dict; ``norm`` is read as :func:`robustreg.threat.canonical_norm` reads it.  A bad value is
    a ValueError naming the option.
    """

    toolkits: Sequence[str] | str | None = None
    norm: str = "linf"
    params: Mapping[str, Any] | None = None
    n: int | None = None
    batch_size: int = 256
    device: str | torch.device | None = None  # None: where the model is
    seed: int = 0
    noise: bool = True
    registry: Any = None
    out: str | os.PathLike[str] | None = None
    progress: bool = True
    no_check: Sequence[str] = ()
    distributed: bool = False
    adaptive: bool = False
    adaptive_budget: float = ADAPTIVE_BUDGET
    output: str | int | None = None  # the logits in a dict / tuple output (robustreg.models.outputs)

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", canonical_norm(self.norm))  # "Linf", np.inf, ... -> "linf"
        if self.toolkits is not None and not isinstance(self.toolkits, str):
            object.__setattr__(self, "toolkits", tuple(self.toolkits))
        object.__setattr__(self, "no_check", tuple(self.no_check))
        if self.params is not None and not isinstance(self.params, Mapping):
            raise ValueError(f"params must be a mapping of parameter names to values, got {self.params!r}")
        object.__setattr__(self, "params", dict(self.params or {}))
        positive_int("batch_size", self.batch_size)
        seed_value("seed", self.seed, optional=False)
        for name in ("noise", "progress", "distributed", "adaptive"):
            flag(name, getattr(self, name))
        budget = self.adaptive_budget
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < math.inf:
            raise ValueError(f"adaptive_budget must be a positive finite number of forward + backward passes per "
                             f"sample, got {budget!r}")

    @property
    def given(self) -> dict[str, Any]:
        """``params`` as a new dict (robustreg's vocabulary: the native attack's parameters)."""
        return dict(self.params or {})
