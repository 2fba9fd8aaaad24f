"""Data as a Python user holds it, read into an ``(x, y)`` pair of tensors at the boundary.

Accepted: an ``(x, y)`` pair of tensors or numpy arrays, any map-style ``torch.utils.data.Dataset`` whose
items are ``(image, label)`` pairs (``TensorDataset`` included) and a ``DataLoader`` yielding
``(x, y)`` batches.  Only the first ``n`` samples are read, in the order the data gives them (a
shuffling DataLoader gives another order each time).  They are collected into memory for now: streaming
batches through the evaluation engine is a later change.  Anything else is refused in one line that says
what is accepted.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

__all__ = ["ACCEPTED", "collect_samples"]

ACCEPTED = ("an (x, y) pair of tensors or numpy arrays, a torch Dataset of (image, label) items, a DataLoader "
            "of (x, y) batches or a robustreg.data.LabeledData")


def _what(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")


def _array(value: Any, what: str) -> torch.Tensor:
    """A tensor from a tensor or a numpy array (copied: the caller's array is never shared)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, copy=True))
    raise TypeError(f"data {what} must be a tensor or a numpy array, got {_what(value)}; data must be {ACCEPTED}")


def _labels(value: Any, what: str) -> torch.Tensor:
    """Labels as given; numpy or Python integers as int64 (numpy's default int is int32 on some platforms)."""
    if isinstance(value, torch.Tensor):
        return value
    labels = torch.as_tensor(np.asarray(value))
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"data {what} must hold integer class indices, got {labels.dtype}")
    return labels.to(torch.int64)


def _count(n: int | None, size: int | None, what: str) -> int | None:
    if n is not None and size is not None and n > size:
        raise ValueError(f"n={n} is larger than the {what} ({size} samples)")
    return size if n is None else n


def _pair(data: tuple[Any, ...] | list[Any], n: int | None) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]:
    if len(data) != 2 or not all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data):
        raise TypeError(f"data must be {ACCEPTED}, got {_what(data)}"
                        + ("; a list of batches is not read: torch.cat them or pass a DataLoader"
                           if all(isinstance(v, (tuple, list)) and len(v) == 2 for v in data) else ""))
    name = "numpy" if isinstance(data[0], np.ndarray) else "tensors"
    x, y = _array(data[0], "x"), _labels(data[1], "y")
    count = _count(n, int(x.shape[0]), "dataset")
    return x[:count], y[:count], int(x.shape[0]), {"name": name}


def _item(item: Any, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"data: dataset item {index} must be an (image, label) pair, got {_what(item)}")
    image = item[0]
    if not isinstance(image, (torch.Tensor, np.ndarray)):
        raise TypeError(f"data: dataset item {index}'s image must be a tensor or a numpy array, got {_what(image)} "
                        "(add a transform such as torchvision.transforms.ToTensor())")
    return _array(image, f"item {index}'s image"), _labels(item[1], f"item {index}'s label")


def _dataset(data: Dataset, n: int | None) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]:
    size = len(data)  # type: ignore[arg-type]  # map-style: checked by the caller
    count = _count(n, size, "dataset")
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:  # no per-item copies
        x, y = data.tensors
    else:
        items = [_item(data[i], i) for i in range(count or 0)]
        if not items:
            raise ValueError("the data holds no samples")
        x, y = torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])
    return x[:count], y[:count], size, {"name": type(data).__name__}


def _loader(data: DataLoader, n: int | None) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]:
    dataset = data.dataset
    size = len(dataset) if isinstance(dataset, Sized) else None
    count = _count(n, size, "DataLoader's dataset")
    xs, ys, got = [], [], 0
    for k, batch in enumerate(data):
        if count is not None and got >= count:
            break  # read no more than the n samples asked for
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(f"data: DataLoader batch {k} must be an (x, y) pair, got {_what(batch)}")
        xs.append(_array(batch[0], f"batch {k}'s x"))
        ys.append(_labels(batch[1], f"batch {k}'s y"))
        got += int(xs[-1].shape[0])
    if not xs:
        raise ValueError("the data holds no samples")
    x, y = torch.cat(xs), torch.cat(ys)
    if n is not None and x.shape[0] < n:
        raise ValueError(f"n={n} is larger than the DataLoader's data ({x.shape[0]} samples)")
    return x[:count], y[:count], size if size is not None else int(x.shape[0]), \
        {"name": f"DataLoader({type(dataset).__name__})"}


def collect_samples(data: Any, n: int | None) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]] | None:
    """``(x, y, size, description)`` of the first ``n`` samples (all when None) of ``data``; ``size``: how
    many the whole data holds.  None for a ``robustreg.data.LabeledData`` (or anything else with a
    ``tensors(n)`` method and a length), which the caller reads itself; a TypeError for anything not
    accepted (see the module docstring)."""
    if callable(getattr(data, "tensors", None)) and isinstance(data, Sized):
        return None
    if isinstance(data, (tuple, list)):
        return _pair(data, n)
    if isinstance(data, DataLoader):
        return _loader(data, n)
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset) and isinstance(data, Sized):
        return _dataset(data, n)
    hint = "; wrap an iterable dataset in a DataLoader" if isinstance(data, IterableDataset) else ""
    raise TypeError(f"data must be {ACCEPTED}, got {_what(data)}{hint}")
