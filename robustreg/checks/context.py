"""The types the checks share: a check's verdict, one cell's view of the evaluation, the context."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..attack import KINDS
from ..data.source import Images, as_images
from ..stats import noise, paired_noise
from ..threat import NORMS, ThreatModel

__all__ = ["DOC", "STATUSES", "CellView", "CheckContext", "CheckResult", "CheckWarning", "Outcome", "noise",
           "paired_noise", "pct"]  # noise, paired_noise: robustreg.stats's, where the checks always found them

STATUSES = ("ok", "warn", "skipped")
DOC = "docs/checks.md"
Outcome = tuple[str, str]  # what a check function returns: (status, message)


class CheckWarning(UserWarning):
    """An automatic check warned: the robust accuracy of the evaluation may be overestimated.

    The Python API (``evaluate``, ``compare``) emits one per warning check after its report is built; the
    ``robustreg`` command ignores them, since it prints the report's checks block itself."""


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict; ``doc`` links to its section (``docs/checks.md#<name>``)."""

    name: str
    status: str
    message: str
    doc: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message, "doc": self.doc}


@dataclass(frozen=True)
class CellView:
    """What one (attack, eps) cell of the evaluation found, aligned with the context's N points.

    ``kind``: the attack's kind (white-box, score, decision, transfer).  ``single_step``: one gradient
    step (FGSM-like).  ``aims_at``: the attack's :attr:`robustreg.AttackInfo.aims_at` ("" = any wrong class).
    ``evaluated``: the points the cell attacked (clean-correct ones, and in cascade
    mode only those still standing); ``broken``, ``adv_logits_finite`` and per-sample extras are read
    only there.  ``extras``: the attack's extras; the checks read ``"loss_trace"`` (per-sample N x T
    losses, start first, or one 1-D mean trace) and ``"ever_broken"`` (bool N); see
    :mod:`robustreg.checks.trace`.
    """

    attack: str
    eps: float
    kind: str
    single_step: bool
    broken: torch.Tensor
    evaluated: torch.Tensor
    adv_logits_finite: torch.Tensor | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    aims_at: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"CellView {self.attack!r}: kind must be one of {KINDS}, got {self.kind!r}")
        masks = {"broken": self.broken, "evaluated": self.evaluated, "adv_logits_finite": self.adv_logits_finite}
        for name, mask in masks.items():
            if mask is not None and (mask.dtype != torch.bool or mask.dim() != 1 or len(mask) != len(self.broken)):
                raise ValueError(f"CellView {self.attack!r}: {name} must be a 1-D bool tensor of length "
                                 f"{len(self.broken)}, got {mask.dtype} of shape {tuple(mask.shape)}")

    def rate(self, on: torch.Tensor) -> float:
        """Fraction of the points flagged in ``on`` that this cell broke."""
        return float(self.broken.cpu()[on].float().mean())


@dataclass
class CheckContext:
    """What the evaluation already has, so the checks reuse its forwards.

    ``x``: N x C x H x W in the box (a tensor, or :class:`~robustreg.data.source.Images` read by index: a streamed
    dataset; a tensor is wrapped as one, so ``ctx.x[idx]`` reads the images at ``idx`` either way); ``y``: int64
    labels; ``clean_logits``: the model's N x K outputs on ``x``; ``norm``/``box``: the threat model; ``cells``:
    one :class:`CellView` per (attack, eps); ``device``: where the model runs (None: where its first parameter
    is); ``seed``: draws the subsamples; ``subsample``: points per model-running check.

    ``shard``: how the pieces of a check's own work run (:meth:`each`): ``shard(count, run)`` returns
    ``[run(k) for k < count]``, and the evaluation passes one that spreads the pieces over its
    torch.distributed ranks (every rank then runs the checks, in the same order).  None: one after the
    other, here.
    """

    model: nn.Module
    x: Images
    y: torch.Tensor
    clean_logits: torch.Tensor
    norm: str = "linf"
    cells: Sequence[CellView] = ()
    device: torch.device | None = None
    seed: int = 0
    subsample: int = 64
    box: tuple[float, float] = (0.0, 1.0)
    shard: Callable[[int, Callable[[int], Any]], list[Any]] | None = None
    num_classes: int | None = None  # the data's class count, when it says (more-outputs-than-classes)

    def __post_init__(self) -> None:
        if not isinstance(self.x, (torch.Tensor, Images)) or not self.x.is_floating_point() or self.x.dim() < 2:
            raise ValueError(f"x must be a floating-point batch N x C x H x W, got {getattr(self.x, 'shape', self.x)}")
        self.x = as_images(self.x)
        n = self.x.shape[0]
        if self.y.dtype != torch.int64 or self.y.shape != (n,):
            raise ValueError(f"y must be int64 of shape ({n},), got {self.y.dtype} of shape {tuple(self.y.shape)}")
        if self.clean_logits.dim() != 2 or self.clean_logits.shape[0] != n:
            raise ValueError(f"clean_logits must be {n} x K, got shape {tuple(self.clean_logits.shape)}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if not isinstance(self.subsample, int) or self.subsample < 1:
            raise ValueError(f"subsample must be an int >= 1, got {self.subsample!r}")
        bad = [c.attack for c in self.cells if len(c.broken) != n]
        if bad:
            raise ValueError(f"cells {bad} have masks of another length than the {n} points")
        if self.device is None:
            self.device = next((t.device for t in [*self.model.parameters(), *self.model.buffers()]),
                               torch.device("cpu"))

    @property
    def clean_correct(self) -> torch.Tensor:
        logits = self.clean_logits.float().cpu()
        return (logits.argmax(dim=1) == self.y.cpu()) & torch.isfinite(logits).all(dim=1)

    def sample(self, among: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Indices (CPU), x and y (on the device) of up to ``subsample`` points flagged in ``among`` (seeded)."""
        pool = torch.arange(self.x.shape[0]) if among is None else among.cpu().nonzero().flatten()
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(self.seed))
        idx = pool[order[: self.subsample]].sort().values
        return idx, self.x.read(idx).to(self.device), self.y[idx.to(self.y.device)].to(self.device)

    def each(self, count: int, run: Callable[[int], Any]) -> list[Any]:
        """``[run(k) for k in range(count)]``, through ``shard`` when there is one.  ``run(k)`` must depend on
        ``k`` alone, so that the pieces give what one process gives on however many ranks they run."""
        if self.shard is None:
            return [run(k) for k in range(count)]
        return self.shard(count, run)

    def threat(self, eps: float) -> ThreatModel:
        return ThreatModel(self.norm, eps, self.box)


def pct(count: int, n: int) -> str:
    return f"{count}/{n} ({100 * count / max(n, 1):.1f}%)"

