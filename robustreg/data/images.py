"""Image datasets from local files: digits (scikit-learn), MNIST idx, torchvision folders, CIFAR-10 JPEGs."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .labeled import CIFAR10_CLASSES, LabeledData, _check_split, _need_root

__all__ = ["load_cifar10", "load_cifar10_jpeg", "load_cifar100", "load_digits", "load_digits28", "load_mnist",
           "load_svhn"]


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


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise ValueError(f"{member.name} in the tarball is not a regular file")
    return handle.read()


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
                    add(member.name.split("/"), lambda m=member: _member_bytes(tar, m))
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

