"""The losses the classic gradient attacks ascend: cross-entropy, the C&W margin and DLR.

Every function takes logits N x K and labels N and returns the SUM over the batch, so the gradient
of one sample does not depend on the batch size.  Each is written so that *increasing* it moves a
sample toward misclassification (untargeted) or toward ``target`` (targeted).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["LOSSES", "attack_loss", "cw_margin", "dlr_loss"]

LOSSES = ("ce", "cw", "dlr")


def _other_max(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """max_{j != label} z_j per sample."""
    masked = logits.scatter(1, label[:, None], float("-inf"))
    return masked.amax(dim=1)


def cw_margin(logits: torch.Tensor, y: torch.Tensor, kappa: float = float("inf")) -> torch.Tensor:
    """Per-sample C&W margin max_{j != y} z_j - z_y, capped at ``kappa`` (Carlini & Wagner 2017)."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    return (_other_max(logits, y) - z_y).clamp(max=kappa)


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample difference-of-logits-ratio loss (Croce & Hein 2020, arXiv:2003.01690).

    Untargeted: -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12), pi the logits sorted descending.
    Targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12).
    """
    ordered = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        if logits.shape[1] < 3:
            raise ValueError(f"the DLR loss needs at least 3 classes, the model has {logits.shape[1]}")
        return -(z_y - _other_max(logits, y)) / (ordered[:, 0] - ordered[:, 2] + 1e-12)
    if logits.shape[1] < 4:
        raise ValueError(f"the targeted DLR loss needs at least 4 classes, the model has {logits.shape[1]}")
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


def attack_loss(
    name: str, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None, kappa: float = float("inf")
) -> torch.Tensor:
    """The batch-summed loss ``name`` ("ce", "cw" or "dlr") that an attack ascends."""
    if name == "ce":
        if target is None:
            return F.cross_entropy(logits, y, reduction="sum")
        return -F.cross_entropy(logits, target, reduction="sum")
    if name == "cw":
        if target is None:
            return cw_margin(logits, y, kappa).sum()
        # toward the target: z_t - max_{j != t} z_j, capped at kappa
        return (-cw_margin(logits, target, float("inf"))).clamp(max=kappa).sum()
    if name == "dlr":
        return dlr_loss(logits, y, target).sum()
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}")
