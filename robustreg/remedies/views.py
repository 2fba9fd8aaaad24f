"""The checks' view of a remedy attack: the evaluation and compare re-run the checks with each one as a cell."""

from __future__ import annotations

from typing import Any

import torch

from ..checks import CellView
from .context import Attempt

__all__ = ["attempt_view", "attempt_views"]


def attempt_view(attempt: Attempt, registry: Any, n: int) -> CellView:
    """One remedy attack as a cell of its own (named ``remedy:REMEDY:LABEL``) over the ``n`` points."""
    broken = torch.zeros(n, dtype=torch.bool)
    broken[attempt.broken] = True
    ran = attempt.ran if attempt.ran is not None else broken.clone()
    info = registry.attack(attempt.attack).info
    return CellView(f"remedy:{attempt.remedy}:{attempt.label}", attempt.eps, info.kind, False, broken, ran,
                    aims_at=info.aims_at)


def attempt_views(attempts: list[Attempt], registry: Any, n: int) -> list[CellView]:
    return [attempt_view(a, registry, n) for a in attempts]
