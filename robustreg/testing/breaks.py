"""Deliberately broken wrappers of a sane model, each hiding its robustness from a plain evaluation in one
of the ways the automatic checks look for (and ``--adaptive``'s remedies answer): for tests of checks and
remedies, and for ``benchmarks/adaptive.py``.  None changes the wrapped model's weights.

- :class:`Scaled`: logits times ``k`` (cross-entropy saturates; the same decisions);
- :class:`Softmaxed`: probabilities instead of logits (the same decisions);
- :class:`Noisy`: Gaussian noise on the input at every call (a randomised model);
- :class:`Quantise`: the input rounded to ``levels`` grey levels (no gradient at all);
- :class:`Staircase`: a smooth staircase of 255 steps, the identity on multiples of 1/255 with a gradient
  of exactly zero away from the half-steps (gradient masking by a smooth function).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Noisy", "Quantise", "Scaled", "Softmaxed", "Staircase"]


class Scaled(nn.Module):
    def __init__(self, model: nn.Module, k: float) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.k


class Softmaxed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


class Noisy(nn.Module):
    """``model((x + sigma N(0, I)).clamp(0, 1))`` with fresh noise on every call."""

    def __init__(self, model: nn.Module, sigma: float) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x + self.sigma * torch.randn_like(x)).clamp(0, 1))


class Quantise(nn.Module):
    """Rounds [0, 1] pixels to ``levels`` grey levels: piecewise constant, zero input gradient."""

    def __init__(self, levels: int = 5) -> None:
        super().__init__()
        self.steps = levels - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.steps) / self.steps


class Staircase(nn.Module):
    """``(floor(255 x) + sigmoid(400 (frac(255 x) - 0.5))) / 255``: continuous (the sigmoid saturates to 0
    and 1 in float32 at the steps' ends), the identity on the pixels of 8-bit images, and a gradient that
    is exactly zero except within about 0.1/255 of the half-steps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x * 255
        base = torch.floor(u)
        return (base + torch.sigmoid(400 * (u - base - 0.5))) / 255
