"""Labels derived from a model's logits: the least-likely class (Kurakin et al.'s step_ll / iter_ll target)."""

from __future__ import annotations

import torch

__all__ = ["least_likely"]


def least_likely(logits: torch.Tensor) -> torch.Tensor:
    """y_LL: per sample, the class with the lowest logit (the lowest softmax probability), int64 of shape N."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be N x K (one row of class scores per sample), got shape {tuple(logits.shape)}")
    return logits.argmin(dim=1)
