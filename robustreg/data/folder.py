"""``imagefolder:DIR``: images in torchvision's ImageFolder layout, read one at a time (never all in memory).

``DIR/<class>/<image>``: the class index of an image is the rank of its folder's name among the sorted
class folder names (torchvision's ``find_classes``); files with the extensions torchvision's
``IMG_EXTENSIONS`` lists are images, in torchvision's order (class, then file name).  Each image is read with
PIL as RGB and, when asked, resized and center-cropped before it becomes a float32 3 x H x W tensor in
[0, 1].  RobustBench's ImageNet protocol is ``resize=256, center_crop=224`` (``Resize(256)`` scales the
shorter side to 256, bilinear with antialiasing; ``CenterCrop(224)``; ``ToTensor()``), the command line's
``--resize 256 --center-crop 224``.  The folder is one split: ``split`` is recorded, not looked up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..errors import UserError
from .labeled import _check_split, _need_root

__all__ = ["FolderData", "load_imagefolder"]


def _size(value: int | None, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{what} must be a positive number of pixels, got {value!r}")
    return value


class FolderData(Dataset):
    """An ImageFolder read lazily: ``data[i]`` decodes image ``i`` (float32 C x H x W in [0, 1], int64 label).

    ``labels``: every image's label (from the folder names, no image is opened); ``classes``: the class
    folder names in index order.  ``resize`` (the shorter side, as ``torchvision.transforms.Resize(int)``)
    and ``center_crop`` (a square) are applied to the PIL image, as RobustBench does for ImageNet.
    """

    def __init__(self, root: str | os.PathLike, split: str = "test", resize: int | None = None,
                 center_crop: int | None = None) -> None:
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

        self.root = Path(root)
        self.spec = f"imagefolder:{root}"
        if not self.root.is_dir():
            raise ValueError(f"{self.spec}: {str(root)!r} is not a folder; expected DIR/<class>/<image> "
                             f"(torchvision's ImageFolder layout)")
        try:
            classes, index = find_classes(str(self.root))
        except FileNotFoundError:
            raise ValueError(f"{self.spec}: {str(root)!r} holds no class folders; expected DIR/<class>/<image> "
                             f"(torchvision's ImageFolder layout)") from None
        samples = make_dataset(str(self.root), index, IMG_EXTENSIONS, allow_empty=True)
        if not samples:
            raise ValueError(f"{self.spec}: the class folders hold no images; allowed extensions: "
                             f"{', '.join(IMG_EXTENSIONS)}")
        self.resize = _size(resize, "resize")
        self.center_crop = _size(center_crop, "center_crop")
        self.classes = list(classes)
        self.paths = [path for path, _ in samples]
        self.labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
        self.num_classes = len(classes)
        self.name = "imagefolder"
        self.split = split

    def with_size(self, resize: int | None, center_crop: int | None) -> FolderData:
        """The same folder read with ``resize`` and ``center_crop`` (None: not applied)."""
        return FolderData(self.root, self.split, resize, center_crop)

    def __len__(self) -> int:
        return len(self.paths)

    def _transform(self) -> Any:
        from torchvision import transforms

        steps: list[Any] = [transforms.Resize(self.resize)] if self.resize is not None else []
        steps += [transforms.CenterCrop(self.center_crop)] if self.center_crop is not None else []
        return transforms.Compose([*steps, transforms.ToTensor()])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image, UnidentifiedImageError

        path = self.paths[index]
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            reason = type(exc).__name__ + ("" if path in str(exc) else f": {exc}")  # PIL's own names the path again
            raise UserError(f"data {self.spec}: image {path!r} cannot be read ({reason}); allowed: image files PIL "
                            f"reads, in DIR/<class>/") from None
        return self._transform()(rgb), self.labels[index]

    def tensors(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` (default all) images stacked in memory and their labels (for small n: the engine
        itself reads the folder a batch at a time)."""
        count = len(self) if n is None else n
        if count > len(self):
            raise ValueError(f"n={count} is larger than the {len(self)} images of {self.spec}")
        images = [self[i][0] for i in range(count)]
        shapes = {tuple(image.shape) for image in images}
        if len(shapes) > 1:
            raise ValueError(f"{self.spec}: images of different sizes {sorted(shapes)}; give --resize and "
                             f"--center-crop (e.g. --resize 256 --center-crop 224)")
        return torch.stack(images), self.labels[:count].clone()

    @property
    def shape(self) -> tuple[int, ...]:
        """One image's shape, C x H x W (of the first image)."""
        return tuple(self[0][0].shape)

    def __repr__(self) -> str:
        return (f"FolderData(root={str(self.root)!r}, n={len(self)}, num_classes={self.num_classes}, "
                f"resize={self.resize}, center_crop={self.center_crop})")


def load_imagefolder(split: str = "test", root: str | os.PathLike | None = None) -> FolderData:
    """``imagefolder:DIR``: a :class:`FolderData` of DIR (read lazily; the command line's ``--resize`` and
    ``--center-crop`` give its sizes)."""
    _check_split(split)
    return FolderData(_need_root(root, "imagefolder"), split)
