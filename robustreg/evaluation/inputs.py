"""The samples an evaluation (or a comparison) runs on: the first n of a dataset, checked."""

from __future__ import annotations

from typing import Any

import torch

from ..data.checks import check_images, check_labels
from ..data.collect import collect_samples

__all__ = ["first_samples"]


def _labeled(data: Any, n: int | None) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]:
    """A ``robustreg.data.LabeledData`` (read with ``data.tensors(n)``): its first n samples, size, description."""
    info: dict[str, Any] = {"name": getattr(data, "name", type(data).__name__)}
    num_classes = getattr(data, "num_classes", None)
    if num_classes is not None:
        info["num_classes"] = int(num_classes)
    size = len(data)
    if n is not None and n > size:
        raise ValueError(f"n={n} is larger than the dataset ({size} samples)")
    x, y = data.tensors(size if n is None else n)
    return x, y, size, info


def _check(x: Any, y: Any) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"data x must be a float tensor in [0, 1], got {getattr(x, 'dtype', type(x).__name__)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise TypeError(f"data y must be an int64 tensor of shape ({x.shape[0]},), got "
                        f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
    if x.dim() != 4:
        raise ValueError(f"data x must be N x C x H x W, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("the data holds no samples")
    check_images(x, "data x")  # the loaders' own check: a NaN pixel or a negative label is refused, not scored
    check_labels(y, "data y")


def first_samples(data: Any, n: int | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(x float [0,1], y int64, data description) of the first n samples (all when n is None).

    ``data``: a ``robustreg.data.LabeledData`` (read with ``data.tensors(n)``), an ``(x, y)`` pair of tensors
    or numpy arrays, a map-style torch ``Dataset`` or a ``DataLoader`` (see :mod:`robustreg.data.collect`:
    collected into memory here for now; streaming is a later engine change).
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    collected = collect_samples(data, n)
    x, y, size, info = collected if collected is not None else _labeled(data, n)
    _check(x, y)
    info["size"] = size
    return x.contiguous(), y.contiguous(), info  # a permuted numpy batch is not; toolkits .view their inputs
