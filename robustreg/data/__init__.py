"""Datasets from local files (nothing is downloaded), and scikit-learn's digits.

A data SPEC is ``NAME`` or ``NAME:ROOT``; :func:`load_data` looks NAME up in the registry and
calls its loader with the split and ROOT.  Built-in names:

===================  ==========================================================================
``digits``           scikit-learn's 8x8 digits (1797 images), 1x8x8 floats in [0, 1]; fixed split
``digits28``         the same images and split, bilinearly upsampled to 1x28x28
``mnist:DIR``        MNIST idx files (``t10k-images-idx3-ubyte[.gz]`` ...; train needs ``train-*``)
``cifar10:DIR``      torchvision's CIFAR-10 folder (``cifar-10-batches-py``), download=False
``cifar100:DIR``     torchvision's CIFAR-100 folder (``cifar-100-python``), download=False
``svhn:DIR``         torchvision's SVHN ``.mat`` files, download=False
``cifar10-jpeg:P``     the 10000 CIFAR-10 test images as JPEG, ``test/<class>/<NNNN>.jpg``, or the tar.gz
``npz:PATH``         arrays ``x``, ``y`` (test only) or ``x_train``, ``y_train``, ``x_test``, ``y_test``
``imagefolder:DIR``  torchvision's ImageFolder layout ``DIR/<class>/<image>``, read lazily (any size)
===================  ==========================================================================

Every loader returns a :class:`LabeledData`: images N x C x H x W (uint8 0..255 or float [0, 1])
and int64 labels; indexing and :meth:`LabeledData.tensors` give float32 images in [0, 1] -- or, for
``imagefolder``, a :class:`FolderData` that decodes an image when it is read (the evaluation streams it
a batch at a time; ``--resize N --center-crop N`` size its images, RobustBench's ImageNet protocol is
``--resize 256 --center-crop 224``).
"""

from __future__ import annotations

from typing import Any

from ..registry import Registrar, Registry
from ..registry.hookspecs import hookimpl
from .folder import FolderData, load_imagefolder
from .images import (
    load_cifar10,
    load_cifar10_jpeg,
    load_cifar100,
    load_digits,
    load_digits28,
    load_mnist,
    load_svhn,
)
from .labeled import CIFAR10_CLASSES, SPLITS, LabeledData, _check_split
from .npz import load_npz

__all__ = [
    "CIFAR10_CLASSES",
    "SPLITS",
    "FolderData",
    "LabeledData",
    "builtin_dataset_specs",
    "load_cifar10",
    "load_cifar10_jpeg",
    "load_cifar100",
    "load_data",
    "load_digits",
    "load_digits28",
    "load_imagefolder",
    "load_mnist",
    "load_npz",
    "load_svhn",
    "parse_data_spec",
    "robustreg_register_datasets",
]


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
    "imagefolder": (load_imagefolder, "DIR/<class>/<image> (torchvision's ImageFolder layout), read lazily; "
                    "--resize N --center-crop N (RobustBench's ImageNet: 256, 224)", True),
}
# Horizontal flips are a valid training augmentation (natural images; the trainer never flips
# single-channel images, so a grey npz is not flipped either).  Not digits, MNIST or SVHN.
_FLIPPABLE = frozenset({"cifar10", "cifar100", "cifar10-jpeg", "npz"})
# Trained without augmentation unless asked: MNIST (paper 000 section 5, "don't perform any data
# augmentation for MNIST"; Madry et al. likewise).
_UNAUGMENTED = frozenset({"mnist"})


@hookimpl
def robustreg_register_datasets(registrar: Any) -> None:
    """Register robustreg's own dataset loaders."""
    for name, (loader, summary, needs_root) in _DATASETS.items():
        registrar.add_dataset(name, loader, summary=summary, needs_root=needs_root, flippable=name in _FLIPPABLE,
                              augment=name not in _UNAUGMENTED)


def builtin_dataset_specs() -> dict[str, Any]:
    """``{name: DatasetSpec}`` of the built-in datasets, without building a full registry."""
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


def load_data(spec: str, split: str = "test", *, registry: Registry | None = None) -> LabeledData | FolderData:
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
            ds = Registry.create().dataset(name)
    if ds.needs_root and root is None:
        raise ValueError(f"dataset {name!r} needs a location: use the spec '{name}:PATH' ({ds.summary})")
    data = ds.load(split, root)
    if not isinstance(data, (LabeledData, FolderData)):
        raise TypeError(f"the loader of dataset {name!r} returned {type(data).__name__}, not a LabeledData")
    return data

