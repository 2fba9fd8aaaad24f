"""Images the engine reads a batch at a time: :class:`Images` (``len``, ``shape``, ``read(idx)``).

The evaluation never needs all n images at once: the clean pass, every attack's batch, the checks' subsamples
and the remedies each read the images they work on, by index.  :class:`TensorImages` holds them in memory
(they were given so); :class:`DatasetImages` reads them from a map-style ``Dataset`` (an ``imagefolder:DIR``,
a ``LabeledData``, a ``TensorDataset``, any Dataset of ``(image, label)`` items), so memory is bounded by
the batch, not by n.  Each batch read is checked at the boundary (float, finite, in [0, 1], the shape of the
first image) and made contiguous (toolkits ``.view`` their inputs).  ``x[idx]`` and ``x[a:b]`` read too, so
code written for a tensor of images keeps working.  The labels are not here: they are read once into memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .checks import check_images

__all__ = ["DatasetImages", "Images", "TensorImages", "as_images", "mean_image"]


class Images:
    """n images C x H x W of one floating dtype, in [0, 1], read by index (see the module docstring)."""

    streamed = False  # True: read from a dataset as needed, never all in memory

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def shape(self) -> torch.Size:
        """``(n, C, H, W)``, as a tensor of the images would have."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    def read(self, idx: torch.Tensor) -> torch.Tensor:
        """The images at ``idx`` (int64 indices, CPU) as one contiguous batch, in that order."""
        raise NotImplementedError

    def dim(self) -> int:
        return 4

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def __getitem__(self, key: slice | torch.Tensor | int) -> torch.Tensor:
        if isinstance(key, slice):
            return self.read(torch.arange(len(self))[key])
        if isinstance(key, int):
            return self.read(torch.tensor([key]))[0]
        idx = torch.as_tensor(key).cpu()
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        return self.read(idx.to(torch.int64).reshape(-1))


class TensorImages(Images):
    """Images given as one tensor N x C x H x W (checked once, whole)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.contiguous()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape(self) -> torch.Size:
        return self.x.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.x.dtype

    def read(self, idx: torch.Tensor) -> torch.Tensor:
        return self.x[idx.to(self.x.device)]


def _image(item: Any, index: int) -> torch.Tensor:
    """Item ``index``'s image as a tensor (a numpy image is copied: the caller's array is never shared)."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"data: dataset item {index} must be an (image, label) pair, got {type(item).__name__}")
    image = item[0]
    if isinstance(image, np.ndarray):
        return torch.from_numpy(np.array(image, copy=True))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"data: dataset item {index}'s image must be a tensor or a numpy array, got "
                        f"{type(image).__name__} (add a transform such as torchvision.transforms.ToTensor())")
    return image


class DatasetImages(Images):
    """The first ``count`` images of a map-style ``dataset``, read item by item when a batch is asked for.

    ``labels``: the labels read once (compared with each item's as it is read: a dataset whose labels change
    between reads is refused).  The first image fixes the shape and dtype every later one must have."""

    streamed = True

    def __init__(self, dataset: Dataset, count: int, labels: torch.Tensor, first: torch.Tensor | None = None) -> None:
        self.dataset = dataset
        self.count = count
        self.labels = labels
        first = first if first is not None else _image(dataset[0], 0)
        self._shape = torch.Size([count, *first.shape])
        self._dtype = first.dtype

    def __len__(self) -> int:
        return self.count

    @property
    def shape(self) -> torch.Size:
        return self._shape

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def read(self, idx: torch.Tensor) -> torch.Tensor:
        batch = torch.empty((len(idx), *self._shape[1:]), dtype=self._dtype)
        for row, i in enumerate(idx.tolist()):
            if not 0 <= i < self.count:
                raise IndexError(f"image index {i} out of range for {self.count} images")
            item = self.dataset[i]
            image = _image(item, i)
            if image.shape != self._shape[1:]:
                paths = getattr(self.dataset, "paths", None)  # a folder's: name the file
                where = f" ({paths[i]})" if isinstance(paths, list) and i < len(paths) else ""
                raise ValueError(f"data: image {i}{where} has shape {tuple(image.shape)}, the first has "
                                 f"{tuple(self._shape[1:])}; every image must have one size (for imagefolder:DIR "
                                 f"give --resize and --center-crop)")
            if int(item[1]) != int(self.labels[i]):
                raise ValueError(f"data: item {i}'s label changed between two reads ({int(self.labels[i])}, now "
                                 f"{int(item[1])}); the dataset must give the same item for the same index")
            batch[row] = image
        check_images(batch, f"data x (images {idx[:1].tolist()[0] if len(idx) else 0}..)")
        return batch


def mean_image(images: Images, batch_size: int = 256) -> torch.Tensor:
    """The per-pixel mean image (C x H x W, float32) of ``images``, read a batch at a time (a tensor's whole)."""
    if isinstance(images, TensorImages):
        return images.x.detach().float().mean(dim=0)
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    for start in range(0, len(images), batch_size):
        total += images.read(torch.arange(start, min(start + batch_size, len(images)))).double().sum(dim=0)
    return (total / len(images)).float()


def as_images(x: torch.Tensor | Images) -> Images:
    """``x`` as :class:`Images` (a tensor is wrapped, not copied)."""
    return x if isinstance(x, Images) else TensorImages(x)
