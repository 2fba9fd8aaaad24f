"""Data as a Python user holds it, as :class:`~robustreg.data.source.Images` and labels at the boundary.

Accepted: an ``(x, y)`` pair of tensors or numpy arrays, any map-style ``torch.utils.data.Dataset`` whose
items are ``(image, label)`` pairs (``TensorDataset``, ``LabeledData``, ``imagefolder:DIR``'s ``FolderData`` and
torchvision's ``ImageFolder`` included) and a ``DataLoader`` yielding ``(x, y)`` batches.  Only the first ``n``
samples are used, in the order the data gives them.  Anything else is refused in one line that says what is
accepted.

How the images are read (the report's ``data.read``):

- ``streamed``: a map-style Dataset, and a DataLoader that reads one in order (a ``SequentialSampler``, the
  default collate) -- the engine reads the dataset's items a batch at a time, never all at once (its own
  batch size; the DataLoader's batch size and workers are not used).  The labels are read once, into memory:
  from the dataset when it holds them, else by one pass over the items.
- ``in memory``: tensors or numpy arrays, a ``TensorDataset`` (the user holds them in memory already).
- ``collected into memory``: a DataLoader that shuffles (it gives another order on every pass, and the engine
  reads its images several times), uses its own ``collate_fn`` or wraps an ``IterableDataset`` -- every batch
  is read once and kept.  Pass its dataset, or a DataLoader with ``shuffle=False``, to stream it.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from .folder import FolderData
from .labeled import LabeledData
from .source import DatasetImages, Images, TensorImages

__all__ = ["ACCEPTED", "COLLECTED", "IN_MEMORY", "STREAMED", "read_samples"]

STREAMED = "streamed"
IN_MEMORY = "in memory"
COLLECTED = "collected into memory (a DataLoader that shuffles, collates its own way or iterates: pass its dataset " \
            "or shuffle=False to stream it)"

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


def _pair(data: tuple[Any, ...] | list[Any], n: int | None) -> tuple[Images, torch.Tensor, int, dict[str, Any]]:
    if len(data) != 2 or not all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data):
        raise TypeError(f"data must be {ACCEPTED}, got {_what(data)}"
                        + ("; a list of batches is not read: torch.cat them or pass a DataLoader"
                           if all(isinstance(v, (tuple, list)) and len(v) == 2 for v in data) else ""))
    name = "numpy" if isinstance(data[0], np.ndarray) else "tensors"
    x, y = _array(data[0], "x"), _labels(data[1], "y")
    count = _count(n, int(x.shape[0]), "dataset")
    return TensorImages(x[:count]), y[:count], int(x.shape[0]), {"name": name, "read": IN_MEMORY}


def _item(item: Any, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"data: dataset item {index} must be an (image, label) pair, got {_what(item)}")
    image = item[0]
    if not isinstance(image, (torch.Tensor, np.ndarray)):
        raise TypeError(f"data: dataset item {index}'s image must be a tensor or a numpy array, got {_what(image)} "
                        "(add a transform such as torchvision.transforms.ToTensor())")
    return _array(image, f"item {index}'s image"), _labels(item[1], f"item {index}'s label")


def _dataset_labels(data: Dataset, count: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first ``count`` labels of a map-style dataset, and its first image when reading them read it.

    Held by the dataset itself (a LabeledData's ``y``, a FolderData's or a torchvision ImageFolder's labels
    without a ``target_transform``), no image is opened; otherwise one pass reads every item and keeps only its
    label (the images are dropped as they are read: memory stays that of one image)."""
    held = getattr(data, "labels", None) if not isinstance(data, LabeledData) else data.y
    if held is None and getattr(data, "target_transform", 1) is None and hasattr(data, "targets"):
        held = data.targets  # torchvision's DatasetFolder / ImageFolder
    if isinstance(held, (torch.Tensor, list, np.ndarray)) and len(held) >= count:
        return _labels(held[:count] if not isinstance(held, list) else held[:count], "labels"), None
    first, labels = None, []
    for i in range(count):
        image, label = _item(data[i], i)
        first = image if i == 0 else first
        labels.append(label.reshape(()))
    return torch.stack(labels), first


def _dataset(data: Dataset, n: int | None) -> tuple[Images, torch.Tensor, int, dict[str, Any]]:
    size = len(data)  # type: ignore[arg-type]  # map-style: checked by the caller
    count = _count(n, size, "dataset")
    name = getattr(data, "name", type(data).__name__) if isinstance(data, (LabeledData, FolderData)) \
        else type(data).__name__
    info: dict[str, Any] = {"name": name, "read": STREAMED}
    if isinstance(getattr(data, "num_classes", None), int):
        info["num_classes"] = int(data.num_classes)  # type: ignore[attr-defined]
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:  # in memory already: no per-item copies
        x, y = data.tensors
        return TensorImages(_array(x, "x")[:count]), _labels(y, "y")[:count], size, {**info, "read": IN_MEMORY}
    if not count:
        raise ValueError("the data holds no samples")
    labels, first = _dataset_labels(data, count)
    if first is None:
        first = _item(data[0], 0)[0]
    return DatasetImages(data, count, labels, first), labels, size, info


def _sequential(loader: DataLoader) -> bool:
    """A DataLoader that reads its map-style dataset in order and stacks the items as they are."""
    from torch.utils.data import SequentialSampler, default_collate

    return (isinstance(loader.sampler, SequentialSampler) and loader.collate_fn is default_collate
            and not isinstance(loader.dataset, IterableDataset) and isinstance(loader.dataset, Sized))


def _collect_loader(data: DataLoader, n: int | None) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]:
    """Every batch of a DataLoader that shuffles, collates its own way or wraps an iterable dataset, collected."""
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


def _loader(data: DataLoader, n: int | None) -> tuple[Images, torch.Tensor, int, dict[str, Any]]:
    if _sequential(data):  # its dataset, read a batch at a time by the engine
        images, y, size, info = _dataset(data.dataset, n)
        return images, y, size, {**info, "name": f"DataLoader({info['name']})"}
    x, y, size, info = _collect_loader(data, n)
    return TensorImages(x), y, size, {**info, "read": COLLECTED}


def read_samples(data: Any, n: int | None) -> tuple[Images, torch.Tensor, int, dict[str, Any]]:
    """``(images, labels, size, description)`` of the first ``n`` samples (all when None) of ``data``; ``size``:
    how many the whole data holds; the description's ``read`` says how the images are read (see the module
    docstring).  A TypeError for anything not accepted."""
    if isinstance(data, (tuple, list)):
        return _pair(data, n)
    if isinstance(data, DataLoader):
        return _loader(data, n)
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset) and isinstance(data, Sized):
        return _dataset(data, n)
    hint = "; wrap an iterable dataset in a DataLoader" if isinstance(data, IterableDataset) else ""
    raise TypeError(f"data must be {ACCEPTED}, got {_what(data)}{hint}")
