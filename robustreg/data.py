"""Datasets from local files (nothing is downloaded), and scikit-learn's digits.

A data SPEC is ``NAME`` or ``NAME:ROOT``; :func:`load_data` looks NAME up in the registry and
calls its loader with the split and ROOT.  Built-in names:

=================  ==========================================================================
``digits``         scikit-learn's 8x8 digits (1797 images), 1x8x8 floats in [0, 1]; fixed split
``digits28``       the same images and split, bilinearly upsampled to 1x28x28
``mnist:DIR``      MNIST idx files (``t10k-images-idx3-ubyte[.gz]`` ...; train needs ``train-*``)
``cifar10:DIR``    torchvision's CIFAR-10 folder (``cifar-10-batches-py``), download=False
``cifar100:DIR``   torchvision's CIFAR-100 folder (``cifar-100-python``), download=False
``svhn:DIR``       torchvision's SVHN ``.mat`` files, download=False
``cifar10-jpeg:P`` the 10000 CIFAR-10 test images as JPEG, ``test/<class>/<NNNN>.jpg``, or the tar.gz
``npz:PATH``       arrays ``x``, ``y`` (test only) or ``x_train``, ``y_train``, ``x_test``, ``y_test``
=================  ==========================================================================

Every loader returns a :class:`LabeledData`: images N x C x H x W (uint8 0..255 or float [0, 1])
and int64 labels; indexing and :meth:`LabeledData.tensors` give float32 images in [0, 1].
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .registry import Registry

__all__ = [
    "CIFAR10_CLASSES",
    "LabeledData",
    "builtin_dataset_specs",
    "load_cifar10",
    "load_cifar10_jpeg",
    "load_cifar100",
    "load_data",
    "load_digits",
    "load_digits28",
    "load_mnist",
    "load_npz",
    "load_svhn",
    "parse_data_spec",
    "robustreg_register_datasets",
]

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
        if len(y) and int(y.min()) < 0:
            raise ValueError(f"{name}: labels must be >= 0, got min {int(y.min())}")
        if num_classes is None:
            num_classes = int(y.max()) + 1 if len(y) else 0
        if len(y) and int(y.max()) >= num_classes:
            raise ValueError(f"{name}: label {int(y.max())} out of range for num_classes={num_classes}")
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

def _digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, random_state=0, stratify=labels)
    chosen = np.sort(train_idx if split == "train" else test_idx)
    x = torch.from_numpy(images[chosen]).unsqueeze(1).contiguous()
    return x, torch.from_numpy(labels[chosen])


def load_digits(split: str = "test", root: str | None = None) -> LabeledData:
    """scikit-learn's 8x8 digits as 1x8x8 floats in [0, 1] (pixel / 16).

    Fixed split: ``train_test_split(indices, test_size=0.2, random_state=0, stratify=labels)``,
    each part in the original order: 1437 train and 360 test images.  ``root`` is ignored.
    """
    _check_split(split)
    x, y = _digits_split(split)
    return LabeledData(x, y, 10, "digits", split)


def load_digits28(split: str = "test", root: str | None = None) -> LabeledData:
    """The ``digits`` images and split, bilinearly upsampled to 1x28x28 (MNIST size), in [0, 1]."""
    import torch.nn.functional as F

    _check_split(split)
    x, y = _digits_split(split)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return LabeledData(x, y, 10, "digits28", split)


# --- MNIST idx files ---------------------------------------------------------------------------

def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{str(path)!r} is not an idx file of unsigned bytes (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims)) if dims else 0
    if len(data) - offset != count:
        raise ValueError(f"{str(path)!r}: header says {dims} ({count} bytes) but the file holds {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(root: Path, prefix: str, kind: str) -> Path | None:
    folders = [root, root / "raw", root / "MNIST" / "raw"]
    for folder in folders:
        for sep in ("-", "."):
            for ext in ("", ".gz"):
                p = folder / f"{prefix}-{kind}{sep}idx{3 if kind == 'images' else 1}-ubyte{ext}"
                if p.is_file():
                    return p
    return None


def load_mnist(split: str = "test", root: str | os.PathLike | None = None) -> LabeledData:
    """MNIST from its idx files in ROOT (or ROOT/raw, ROOT/MNIST/raw), gzipped or not.

    Test: ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``; train: ``train-*``.
    Returns 1x28x28 uint8 images.
    """
    _check_split(split)
    base = _need_root(root, "mnist")
    if not base.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {str(base)!r}")
    prefix = "train" if split == "train" else "t10k"
    images, labels = _find_idx(base, prefix, "images"), _find_idx(base, prefix, "labels")
    if images is None or labels is None:
        raise FileNotFoundError(
            f"MNIST {split} split not found in {str(base)!r}: need {prefix}-images-idx3-ubyte[.gz] and "
            f"{prefix}-labels-idx1-ubyte[.gz]"
        )
    x = _read_idx(images)
    y = _read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"MNIST files disagree: images {x.shape} vs labels {y.shape}")
    images_t = torch.from_numpy(x.copy()).unsqueeze(1)
    return LabeledData(images_t, torch.from_numpy(y.astype(np.int64)), 10, "mnist", split)


# --- torchvision folders -----------------------------------------------------------------------

def _torchvision_dataset(kind: str, split: str, root: Path) -> Any:
    from torchvision import datasets

    if not root.exists():
        raise FileNotFoundError(f"{kind} folder not found: {str(root)!r}")
    try:
        if kind == "svhn":
            return datasets.SVHN(str(root), split=split, download=False)
        folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[kind]
        if root.name == folder:  # accept the batches folder itself
            root = root.parent
        cls = datasets.CIFAR10 if kind == "cifar10" else datasets.CIFAR100
        return cls(str(root), train=split == "train", download=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        layout = {
            "cifar10": "ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
            "cifar100": "ROOT/cifar-100-python/{train,test,meta}",
            "svhn": "ROOT/{train,test}_32x32.mat",
        }[kind]
        raise FileNotFoundError(
            f"{kind} {split} split not found under {str(root)!r} (expected {layout}): {exc}"
        ) from exc


def _from_hwc(data: Any, targets: Any, num_classes: int, name: str, split: str) -> LabeledData:
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(data, dtype=np.uint8))).permute(0, 3, 1, 2).contiguous()
    return LabeledData(x, torch.as_tensor(np.asarray(targets), dtype=torch.int64), num_classes, name, split)


def load_cifar10(split: str = "test", root: str | os.PathLike | None = None) -> LabeledData:
    """CIFAR-10 from torchvision's python-pickle folder in ROOT (never downloads); 3x32x32 uint8."""
    _check_split(split)
    ds = _torchvision_dataset("cifar10", split, _need_root(root, "cifar10"))
    return _from_hwc(ds.data, ds.targets, 10, "cifar10", split)


def load_cifar100(split: str = "test", root: str | os.PathLike | None = None) -> LabeledData:
    """CIFAR-100 (fine labels) from torchvision's python-pickle folder in ROOT (never downloads); 3x32x32 uint8."""
    _check_split(split)
    ds = _torchvision_dataset("cifar100", split, _need_root(root, "cifar100"))
    return _from_hwc(ds.data, ds.targets, 100, "cifar100", split)


def load_svhn(split: str = "test", root: str | os.PathLike | None = None) -> LabeledData:
    """SVHN (cropped digits, ``{train,test}_32x32.mat`` in ROOT, never downloads); 3x32x32 uint8, digit 0 is 0."""
    _check_split(split)
    ds = _torchvision_dataset("svhn", split, _need_root(root, "svhn"))
    x = torch.from_numpy(np.ascontiguousarray(ds.data, dtype=np.uint8))
    return LabeledData(x, torch.as_tensor(np.asarray(ds.labels), dtype=torch.int64), 10, "svhn", split)


# --- CIFAR-10 JPEG folder / tarball ------------------------------------------------------------

def _jpeg_source(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / "test").is_dir():
        return root
    if root.is_dir():
        tars = sorted(root.glob("*.tar.gz")) + sorted(root.glob("*.tgz"))
        if len(tars) == 1:
            return tars[0]
        if len(tars) > 1:
            raise ValueError(f"{str(root)!r} holds several tarballs ({', '.join(t.name for t in tars)}); name one")
    raise FileNotFoundError(
        f"cifar10-jpeg: {str(root)!r} is neither a .tar.gz nor a folder holding test/<class>/<NNNN>.jpg"
    )


def _read_jpeg_bytes(source: Path) -> dict[tuple[str, int], bytes]:
    out: dict[tuple[str, int], bytes] = {}

    def add(parts: Sequence[str], read: Any) -> None:
        # .../test/<class>/<NNNN>.jpg
        if len(parts) >= 3 and parts[-3] == "test" and parts[-2] in CIFAR10_CLASSES and parts[-1].endswith(".jpg"):
            stem = parts[-1][:-4]
            if stem.isdigit():
                out[(parts[-2], int(stem))] = read()

    if source.is_file():
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    add(member.name.split("/"), lambda m=member: tar.extractfile(m).read())
    else:
        for path in (source / "test").glob("*/*.jpg"):
            add(path.relative_to(source).parts, path.read_bytes)
    return out


def _decode_jpegs(blobs: list[bytes]) -> list[torch.Tensor]:
    """Decode JPEG bytes to 3 x H x W uint8 RGB tensors (torchvision.io; PIL where that is gone)."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:  # torchvision deprecates its image codecs (0.29) in favour of torchcodec
        from PIL import Image

        out = []
        for blob in blobs:
            with Image.open(io.BytesIO(blob)) as img:
                out.append(torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1))
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        return list(decode_jpeg(data, mode=ImageReadMode.RGB))


def _find_y_all(source: Path) -> np.ndarray | None:
    folder = source.parent if source.is_file() else source
    for cand in sorted(folder.glob("*.npz")) + sorted(folder.parent.glob("*.npz")):
        try:
            with np.load(cand) as z:
                if "y_all" in z.files and z["y_all"].shape == (10000,):
                    return np.asarray(z["y_all"], dtype=np.int64)
        except (OSError, ValueError):
            continue
    return None


def load_cifar10_jpeg(
    split: str = "test", root: str | os.PathLike | None = None, *, y_all: np.ndarray | None = None
) -> LabeledData:
    """The 10000 CIFAR-10 test images stored as JPEG (lossy; quality ~75), 3x32x32 uint8.

    ROOT is a folder holding ``test/<classname>/<NNNN>.jpg`` (NNNN: the image's rank among the test
    images of its class, in official order), the ``.tar.gz`` of that layout (read in memory, never
    extracted), or a folder holding exactly one such tarball.  Order: if the labels of the whole
    test set in official order are known (``y_all``, or a ``y_all`` array of shape (10000,) in an
    ``.npz`` beside the images or one folder up, e.g. ``cifar10_test_first932.npz``), official order
    is restored by walking ``y_all`` and taking each class's next image; otherwise the images come in
    class-major order (all airplanes 0000.., then automobiles, ...).  Only split ``"test"`` exists
    (all 10000 images); ``"train"`` raises ValueError: carve one yourself, e.g. ``.subset(range(932,
    10000))`` for training and the exact ``npz:`` images 0..931 for testing.
    """
    _check_split(split)
    if split == "train":
        raise ValueError(
            "cifar10-jpeg holds only the 10000 CIFAR-10 test images, there is no 'train' split; carve one, e.g. "
            "load_data('cifar10-jpeg:DIR').subset(range(932, 10000)) to train and the exact npz images 0..931 to test"
        )
    source = _jpeg_source(_need_root(root, "cifar10-jpeg"))
    blobs = _read_jpeg_bytes(source)
    if not blobs:
        raise FileNotFoundError(f"cifar10-jpeg: no test/<class>/<NNNN>.jpg images found in {str(source)!r}")
    if y_all is None:
        y_all = _find_y_all(source)
    order: list[tuple[str, int]] = []
    if y_all is not None:
        y_all = np.asarray(y_all, dtype=np.int64)
        counts = {c: 0 for c in range(10)}
        for label in y_all.tolist():
            order.append((CIFAR10_CLASSES[label], counts[label]))
            counts[label] += 1
        missing = [k for k in order if k not in blobs]
        if missing:
            raise ValueError(
                f"cifar10-jpeg: {len(missing)} images named by y_all are missing in {str(source)!r}, e.g. "
                f"test/{missing[0][0]}/{missing[0][1]:04d}.jpg"
            )
    else:
        order = sorted(blobs, key=lambda k: (CIFAR10_CLASSES.index(k[0]), k[1]))
    x = torch.stack(_decode_jpegs([blobs[key] for key in order]))
    y = torch.tensor([CIFAR10_CLASSES.index(c) for c, _ in order], dtype=torch.int64)
    return LabeledData(x, y, 10, "cifar10-jpeg", split)


# --- npz arrays --------------------------------------------------------------------------------

def _npz_images(x: np.ndarray, path: Path, key: str) -> torch.Tensor:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"{str(path)!r}: {key} must be N x H x W x C or N x C x H x W, got shape {x.shape}")
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif x.shape[1] in (1, 3, 4):
        pass
    elif x.shape[-1] in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    else:
        raise ValueError(
            f"{str(path)!r}: cannot tell the channel axis of {key} with shape {x.shape}; expected 1, 3 or 4 channels "
            "first (N x C x H x W) or last (N x H x W x C)"
        )
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise ValueError(f"{str(path)!r}: {key} holds NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            hint = "; uint8-range values? store them as uint8" if hi > 1.0 and hi <= 255.0 else ""
            raise ValueError(f"{str(path)!r}: float {key} must be in [0, 1], got values in [{lo}, {hi}]{hint}")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    raise ValueError(f"{str(path)!r}: {key} must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")


def _npz_labels(y: np.ndarray, n: int, path: Path, key: str) -> torch.Tensor:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{str(path)!r}: {key} must be 1-D with one label per image ({n}), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{str(path)!r}: {key} must hold integer class indices, got dtype {y.dtype}")
    if n and int(y.min()) < 0:
        raise ValueError(f"{str(path)!r}: {key} has negative labels (min {int(y.min())})")
    return torch.from_numpy(y.astype(np.int64))


def load_npz(split: str = "test", root: str | os.PathLike | None = None) -> LabeledData:
    """Images and labels from a NumPy ``.npz`` at PATH.

    Arrays: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (both splits), or ``x`` and ``y`` (split
    ``"test"`` only; ``"train"`` raises ValueError).  Images N x H x W x C or N x C x H x W (or
    N x H x W, one channel), uint8 0..255 or float in [0, 1]; labels integer.  An optional scalar
    ``num_classes`` overrides ``max(y) + 1``.
    """
    _check_split(split)
    path = _need_root(root, "npz")
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {str(path)!r}")
    with np.load(path, allow_pickle=False) as z:
        files = set(z.files)
        if {f"x_{split}", f"y_{split}"} <= files:
            xk, yk = f"x_{split}", f"y_{split}"
        elif {"x", "y"} <= files:
            if split == "train":
                raise ValueError(
                    f"{str(path)!r} holds one set of arrays (x, y), used as the test split; for a train split store "
                    "x_train, y_train, x_test, y_test"
                )
            xk, yk = "x", "y"
        else:
            raise ValueError(
                f"{str(path)!r} must hold arrays x and y, or x_train, y_train, x_test, y_test; it holds "
                f"{', '.join(sorted(files)) or 'nothing'}"
            )
        x = _npz_images(z[xk], path, xk)
        y = _npz_labels(z[yk], x.shape[0], path, yk)
        num_classes = int(z["num_classes"]) if "num_classes" in files else None
    return LabeledData(x, y, num_classes, path.stem, split)


# --- registration and specs --------------------------------------------------------------------

_DATASETS: dict[str, tuple[Any, str, bool]] = {
    "digits": (load_digits, "scikit-learn 8x8 digits, 1x8x8 in [0, 1]; fixed stratified 80/20 split", False),
    "digits28": (load_digits28, "the digits split upsampled to 1x28x28", False),
    "mnist": (load_mnist, "MNIST idx files in DIR (gz or not)", True),
    "cifar10": (load_cifar10, "CIFAR-10, torchvision folder in DIR (no download)", True),
    "cifar100": (load_cifar100, "CIFAR-100, torchvision folder in DIR (no download)", True),
    "svhn": (load_svhn, "SVHN .mat files in DIR (no download)", True),
    "cifar10-jpeg": (load_cifar10_jpeg, "the 10000 CIFAR-10 test images as JPEG, folder or tar.gz (test only)", True),
    "npz": (load_npz, "arrays x, y (or x_train ... y_test) in an .npz file", True),
}


@hookimpl
def robustreg_register_datasets(registrar: Any) -> None:
    """Register robustreg's own dataset loaders."""
    for name, (loader, summary, needs_root) in _DATASETS.items():
        registrar.add_dataset(name, loader, summary=summary, needs_root=needs_root)


def builtin_dataset_specs() -> dict[str, Any]:
    """``{name: DatasetSpec}`` of the built-in datasets, without building a full registry."""
    from .registry import Registrar

    sink: dict[str, dict[str, Any]] = {"datasets": {}}
    robustreg_register_datasets(Registrar(__name__, sink))
    return sink["datasets"]


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """``"name"`` -> ``("name", None)``; ``"name:ROOT"`` -> ``("name", "ROOT")`` (ROOT may contain ':')."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"data spec must be a non-empty string NAME or NAME:PATH, got {spec!r}")
    name, sep, root = spec.strip().partition(":")
    if not name:
        raise ValueError(f"data spec {spec!r} has no dataset name before ':'")
    if sep and not root:
        raise ValueError(f"data spec {spec!r} has an empty path after ':'")
    return name, (root if sep else None)


def load_data(spec: str, split: str = "test", *, registry: Registry | None = None) -> LabeledData:
    """Load a dataset from a SPEC: ``NAME`` or ``NAME:ROOT`` (``digits``, ``mnist:DIR``, ``npz:PATH``, ...).

    ``registry``: where NAME is looked up; without one the built-in datasets are found directly and
    any other name through ``Registry.create()``.  Unknown names raise the registry's
    UnknownNameError (listing close matches); a dataset that needs a ROOT and gets none raises
    ValueError.
    """
    name, root = parse_data_spec(spec)
    _check_split(split)
    if registry is not None:
        ds = registry.dataset(name)
    else:
        builtin = builtin_dataset_specs()
        if name in builtin:
            ds = builtin[name]
        else:
            from .registry import Registry

            ds = Registry.create().dataset(name)
    if ds.needs_root and root is None:
        raise ValueError(f"dataset {name!r} needs a location: use the spec '{name}:PATH' ({ds.summary})")
    data = ds.load(split, root)
    if not isinstance(data, LabeledData):
        raise TypeError(f"the loader of dataset {name!r} returned {type(data).__name__}, not a LabeledData")
    return data

