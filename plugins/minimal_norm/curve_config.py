"""The options of one robustness curve, as :class:`CurveConfig` (what ``curve_report`` and ``verify`` take).

``curve_report(model, x, y, registry, attack, config=None, **options)``: ``options`` (the fields, the
keywords ``curve_report`` always took) replace the config's fields; the whole is checked once, here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robustreg.options import flag, positive_int, seed_value
from robustreg.threat import ThreatModel, canonical_norm

__all__ = ["CurveConfig"]


@dataclass(frozen=True)
class CurveConfig:
    """Every option of one curve.

    ``norm``: the curve's norm.  ``params``: the minimal-norm attack's parameters.  ``eps``: where to report
    the curve (None: a grid from 0 to the largest norm found).  ``verifier`` / ``at`` / ``verify_params``: a
    fixed-budget attack run at each eps of ``at`` to check the curve (None: no verification).  ``seed``: both
    attacks' seed.  ``batch_size``: samples per attack call.  ``device``: where to run (None: where the model
    is).  ``progress``: progress bars.  A bad value is a ValueError naming the option.
    """

    norm: str = "linf"
    params: Mapping[str, Any] | None = None
    eps: Sequence[float] | None = None
    verifier: str | None = None
    at: Sequence[float] = ()
    verify_params: Mapping[str, Any] | None = None
    seed: int = 0
    batch_size: int = 256
    device: torch.device | str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", canonical_norm(self.norm))  # "Linf", np.inf, ... -> "linf"
        for name in ("params", "verify_params"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise ValueError(f"{name} must be a mapping of parameter names to values, got {value!r}")
            object.__setattr__(self, name, dict(value or {}))
        if self.eps is not None:
            object.__setattr__(self, "eps", tuple(self._budgets("eps", self.eps)))
        object.__setattr__(self, "at", tuple(self._budgets("at", self.at)))
        if self.verifier is not None and not (isinstance(self.verifier, str) and self.verifier):
            raise ValueError(f"verifier must be an attack name or None, got {self.verifier!r}")
        if (self.verifier is None) != (not self.at):
            raise ValueError(f"verifier and at go together (a fixed-budget attack and the eps to run it at), got "
                             f"verifier={self.verifier!r}, at={list(self.at)!r}")
        positive_int("batch_size", self.batch_size)
        seed_value("seed", self.seed, optional=False)
        flag("progress", self.progress)

    def _budgets(self, name: str, values: Sequence[float]) -> list[float]:
        """``values`` as floats, each a valid eps for :attr:`norm` (ThreatModel's one-line error, naming ``name``)."""
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ValueError(f"{name} must be a list of eps values, got {values!r}")
        out = []
        for value in values:
            try:
                out.append(ThreatModel(self.norm, value).eps)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}: {exc}") from None
        return out
