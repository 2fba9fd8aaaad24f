"""LabeledData: images and labels of one split, as the loaders return them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .checks import check_images, check_labels

__all__ = ["CIFAR10_CLASSES", "SPLITS", "LabeledData"]

SPLITS = ("train", "test")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class LabeledData(Dataset):
    """Images and labels held in memory.

    ``x``: N x C x H x W, uint8 (0..255) or floating point in [0, 1]; ``y``: N int64 labels in
    ``[0, num_classes)``.  ``data[i]`` is ``(float32 image in [0, 1], int64 label)``.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, num_classes: int | None = None, name: str = "data", split: str = "test"
    ) -> None:
        x = torch.as_tensor(x)
        y = torch.as_tensor(y)
        if x.dim() != 4:
            raise ValueError(f"{name}: x must be N x C x H x W, got shape {tuple(x.shape)}")
        if x.dtype != torch.uint8 and not x.is_floating_point():
            raise ValueError(f"{name}: x must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: y must be 1-D with one label per image ({x.shape[0]}), got {tuple(y.shape)}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"{name}: y must hold integer class indices, got dtype {y.dtype}")
        y = y.to(torch.int64)
        check_images(x, f"{name}: x")
        check_labels(y, f"{name}: y")
        if num_classes is None:
            num_classes = int(y.max()) + 1 if len(y) else 0
        check_labels(y, f"{name}: y", num_classes)
        self.x = x
        self.y = y
        self.num_classes = int(num_classes)
        self.name = name
        self.split = split

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @staticmethod
    def _to_float(x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.to(torch.float32).div_(255.0)
        return x.to(torch.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self._to_float(self.x[index])
        if self.x.dtype == torch.float32:  # a view of the data: hand out a copy
            img = img.clone()
        return img, self.y[index]

    def tensors(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` (default all) images as float32 in [0, 1] and their int64 labels (copies)."""
        if n is None:
            n = len(self)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative int or None, got {n!r}")
        if n > len(self):
            raise ValueError(f"n={n} is larger than the {len(self)} images of {self.name} ({self.split})")
        x = self._to_float(self.x[:n])
        if x.data_ptr() == self.x.data_ptr():
            x = x.clone()
        return x, self.y[:n].clone()

    def subset(self, indices: Sequence[int] | torch.Tensor | range) -> LabeledData:
        """A new LabeledData with the images at ``indices`` (same name, split and num_classes)."""
        idx = torch.as_tensor(list(indices) if isinstance(indices, range) else indices)
        if idx.dtype == torch.bool or (idx.is_floating_point() and idx.numel() > 0):
            raise ValueError(f"indices must be integer positions, got dtype {idx.dtype} (for a mask use .nonzero())")
        idx = idx.to(torch.int64)
        if idx.dim() != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(idx.shape)}")
        if len(idx) and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} images of {self.name}")
        return LabeledData(self.x[idx], self.y[idx], self.num_classes, self.name, self.split)

    @property
    def shape(self) -> tuple[int, ...]:
        """One image's shape, C x H x W."""
        return tuple(self.x.shape[1:])

    def __repr__(self) -> str:
        return (
            f"LabeledData(name={self.name!r}, split={self.split!r}, n={len(self)}, shape={self.shape}, "
            f"dtype={self.x.dtype}, num_classes={self.num_classes})"
        )


def _check_split(split: str, allowed: Sequence[str] = SPLITS) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(repr(s) for s in allowed)}, got {split!r}")


def _need_root(root: str | os.PathLike | None, name: str) -> Path:
    if root is None or str(root) == "":
        raise ValueError(f"dataset {name!r} needs a location: use the spec '{name}:PATH'")
    return Path(os.path.expanduser(str(root)))


# --- digits (scikit-learn) ---------------------------------------------------------------------

