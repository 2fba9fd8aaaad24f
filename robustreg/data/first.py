"""The samples a front-end runs on: the first n of a dataset, checked at the boundary.

:func:`first_images` gives the images as :class:`~robustreg.data.source.Images`, read a batch at a time
(``evaluate``, ``autoattack``, ``compare``, ``curve`` and ``train`` stream a Dataset); :func:`first_samples` gives
them as one tensor (the analyses hold their few hundred samples in memory: they read them several times).
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import torch
from torch.utils.data import Dataset

from .checks import check_images, check_labels
from .collect import read_samples
from .source import Images, TensorImages

__all__ = ["first_images", "first_samples", "in_memory"]


def _labeled(data: Any, n: int | None) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]:
    """Anything with ``data.tensors(n)`` and a length that is not a Dataset: its first n samples, size, description."""
    info: dict[str, Any] = {"name": getattr(data, "name", type(data).__name__), "read": "in memory"}
    num_classes = getattr(data, "num_classes", None)
    if num_classes is not None:
        info["num_classes"] = int(num_classes)
    size = len(data)
    if n is not None and n > size:
        raise ValueError(f"n={n} is larger than the dataset ({size} samples)")
    x, y = data.tensors(size if n is None else n)
    return x, y, size, info


def _check(x: Images, y: Any) -> None:
    if not x.is_floating_point():
        raise TypeError(f"data x must be a float tensor in [0, 1], got {x.dtype}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise TypeError(f"data y must be an int64 tensor of shape ({x.shape[0]},), got "
                        f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
    if len(x.shape) != 4:
        raise ValueError(f"data x must be N x C x H x W, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("the data holds no samples")
    if isinstance(x, TensorImages):  # a streamed dataset's images are checked a batch at a time, as they are read
        check_images(x.x, "data x")  # the loaders' own check: a NaN pixel or a negative label is refused, not scored
    check_labels(y, "data y")


def first_images(data: Any, n: int | None) -> tuple[Images, torch.Tensor, dict[str, Any]]:
    """(images float [0,1], y int64, data description) of the first n samples (all when n is None).

    ``data``: a ``robustreg.data.LabeledData``, an ``imagefolder`` ``FolderData``, an ``(x, y)`` pair of tensors or
    numpy arrays, a map-style torch ``Dataset`` or a ``DataLoader`` (see :mod:`robustreg.data.collect`: a Dataset
    is streamed, a shuffling DataLoader collected; the description's ``read`` says which).
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    if callable(getattr(data, "tensors", None)) and isinstance(data, Sized) and not isinstance(data, Dataset):
        x_all, y, size, info = _labeled(data, n)
        if not isinstance(x_all, torch.Tensor) or x_all.dim() != 4:
            raise ValueError(f"data x must be N x C x H x W, got {getattr(x_all, 'shape', type(x_all).__name__)}")
        x: Images = TensorImages(x_all)
    else:
        x, y, size, info = read_samples(data, n)
    _check(x, y)
    info["size"] = size
    return x, y.contiguous(), info


def in_memory(x: Images) -> torch.Tensor:
    """All of ``x`` as one tensor (the tensor itself when it was given as one)."""
    return x.x if isinstance(x, TensorImages) else x.read(torch.arange(len(x)))


def first_samples(data: Any, n: int | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """:func:`first_images` read into one tensor (for the front-ends that hold their samples in memory)."""
    x, y, info = first_images(data, n)
    if x.streamed:
        info["read"] = "collected into memory"
    return in_memory(x), y, info
