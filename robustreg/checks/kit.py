"""The pieces a check that runs the model again shares: the model kept quiet, the losses, the core's PGD in
pieces, the largest budget evaluated.  Public (through :mod:`robustreg.checks`) for plugins' checks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..ascent import projected_gradient_ascent
from ..attack import ModelState
from ..threat import ThreatModel
from .context import CheckContext

__all__ = ["PIECE", "Objective", "ce_loss", "dlr_loss", "largest_eps", "quiet_model", "standing_after_pgd"]

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (model, x, y) -> per-sample loss


@contextlib.contextmanager
def quiet_model(ctx: CheckContext) -> Iterator[nn.Module]:
    """The model in eval mode with frozen parameters; its state and the global RNGs restored after."""
    state = ModelState(ctx.model)
    devices = [ctx.device] if ctx.device is not None and ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            state.clear_grads()
            for p in ctx.model.parameters():
                p.requires_grad_(False)
            ctx.model.eval()
            yield ctx.model
        finally:
            state.restore()


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, in float32."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020): unchanged when the logits are rescaled."""
    logits = logits.float()
    ordered = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return (other - z_y) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


#: points per piece of a check's PGD: the pieces are the same on any number of ranks (see CheckContext.each)
PIECE = 32


def standing_after_pgd(ctx: CheckContext, model: nn.Module, objective: Objective, x: torch.Tensor, y: torch.Tensor,
         threat: ThreatModel, steps: int, step_size: float) -> torch.Tensor:
    """The core's PGD from the clean point, :data:`PIECE` points at a time through ``ctx.each``; per sample:
    still correctly classified (NaN counts as not), on the CPU."""

    def piece(k: int) -> torch.Tensor:
        xs, ys = x[k * PIECE:(k + 1) * PIECE], y[k * PIECE:(k + 1) * PIECE]
        x_adv = projected_gradient_ascent(model, lambda m, xa, ya, _t: objective(m, xa, ya).sum(), xs, ys, None,
                                          threat, steps=steps, step_size=step_size, random_start=False, restarts=1,
                                          generator=torch.Generator(device=xs.device))
        with torch.no_grad():
            logits = model(x_adv).float()
        return ((logits.argmax(dim=1) == ys) & torch.isfinite(logits).all(dim=1)).cpu()

    return torch.cat(ctx.each(-(-len(x) // PIECE), piece))


def largest_eps(ctx: CheckContext) -> float | None:
    """The largest eps of the evaluated cells (None without cells)."""
    return max((c.eps for c in ctx.cells), default=None)
