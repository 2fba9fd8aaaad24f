"""The one check of images' and labels' values, shared by every way data comes in: the file loaders (through
:class:`~robustreg.data.LabeledData`), an ``(x, y)`` pair handed to ``evaluate`` / ``compare`` / ``train``.

A NaN pixel or a negative label is refused with one line, never counted as a misclassified point.
"""

from __future__ import annotations

import torch

__all__ = ["check_images", "check_labels"]


def check_images(x: torch.Tensor, what: str = "data x") -> None:
    """uint8 images pass (0..255 by construction); float ones must be finite and in [0, 1]."""
    if x.dtype == torch.uint8 or x.numel() == 0:
        return
    if not x.is_floating_point():
        raise ValueError(f"{what} must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")
    finite = torch.isfinite(x).reshape(x.shape[0], -1).all(dim=1)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        raise ValueError(f"{what} holds NaN or infinite pixels (first in image {first}); pixels must be finite "
                         f"floats in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        hint = "; 0..255 values? divide by 255 or store them as uint8" if 1 < hi <= 255 and lo >= 0 else ""
        raise ValueError(f"{what} must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]{hint}")


def check_labels(y: torch.Tensor, what: str = "data y", num_classes: int | None = None) -> None:
    """Class indices: >= 0, and < ``num_classes`` when it is known."""
    if y.numel() == 0:
        return
    low = int(y.min())
    if low < 0:
        first = int((y < 0).nonzero()[0])
        raise ValueError(f"{what} must hold class indices >= 0, got {low} (first negative at index {first})")
    if num_classes is not None and int(y.max()) >= num_classes:
        raise ValueError(f"{what}: label {int(y.max())} out of range for num_classes={num_classes} "
                         f"(labels 0..{num_classes - 1})")
