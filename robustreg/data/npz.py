"""Arrays from a ``.npz`` file as a dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .checks import check_images, check_labels
from .labeled import LabeledData, _check_split, _need_root

__all__ = ["load_npz"]


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
        images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        check_images(images, f"{str(path)!r}: {key}")
        return images
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
    labels = torch.from_numpy(y.astype(np.int64))
    check_labels(labels, f"{str(path)!r}: {key}")
    return labels


def _npz_num_classes(value: np.ndarray, path: Path) -> int:
    """The optional ``num_classes``: one integer >= 1 (a 0-d array, as ``np.savez(num_classes=10)`` stores it)."""
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer) or int(value) < 1:
        shown = f"{value.item()!r}" if value.ndim == 0 else f"an array of shape {value.shape}"
        raise UserError(f"{str(path)!r}: num_classes must be one integer >= 1, got {shown} ({value.dtype})")
    return int(value)


def _check_npz_file(path: Path) -> None:
    """A ``.npz`` is a zip archive of ``.npy`` arrays: say what the file is instead when it is not one."""
    with path.open("rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PK\x03\x04"):
        return
    if not head:
        raise UserError(f"{str(path)!r} is empty (0 bytes), not a .npz file")
    if head.startswith(b"\x93NUMPY"):
        raise UserError(f"{str(path)!r} is a single .npy array, not a .npz archive of x and y (save with np.savez)")
    try:
        head.decode("utf-8")
        kind = "a text file"
    except UnicodeDecodeError:
        kind = "not a zip archive"
    raise UserError(f"{str(path)!r} is {kind}, not a .npz file (a NumPy zip archive written by np.savez); "
                    f"it starts with {head[:16]!r}")


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
    _check_npz_file(path)
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
        if z[xk].ndim == 0 or z[xk].shape[0] == 0:
            raise UserError(f"{str(path)!r}: {xk} holds no samples (shape {z[xk].shape})")
        x = _npz_images(z[xk], path, xk)
        y = _npz_labels(z[yk], x.shape[0], path, yk)
        num_classes = _npz_num_classes(z["num_classes"], path) if "num_classes" in files else None
    return LabeledData(x, y, num_classes, path.stem, split)
