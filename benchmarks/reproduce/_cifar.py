"""Claim 4's CIFAR-10 setting (issue 24): the JPEG test images 932..9999 to train on, the byte-exact test images
0..931 to evaluate on, and a small ResNet of He et al.'s CIFAR family.

The shared folder holds the 10000 CIFAR-10 *test* images only (the training set does not ship): as JPEG (quality
~75, lossy) in a tar.gz, and the first 932 byte-exact in ``cifar10_test_first932.npz`` (with ``y_all``, the
labels of all 10000 in official order, from which the ``cifar10-jpeg`` source restores official order). The split
carves them so that training and evaluation never share an image: train = JPEG images 932..9999 (9068), test =
exact images 0..931.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _report import SHARED

CIFAR_DIR = SHARED / "data" / "cifar10"
EXACT = "cifar10_test_first932.npz"
FIRST = 932  # the exact images 0..931 evaluate; the JPEG images 932..9999 train
SPLIT_TEXT = (f"CIFAR-10, carved from the official test set (the training set does not ship): training on the JPEG "
              f"(quality ~75) test images {FIRST}..9999 ({10000 - FIRST} images, official order restored from "
              f"y_all), evaluation on the byte-exact test images 0..{FIRST - 1}")


def resnet8(num_classes: int = 10) -> Any:
    """ResNet-8: He et al.'s CIFAR ResNet (arXiv:1512.03385, 6n+2 layers) at n = 1, the widths 16-32-64 and
    option-A shortcuts of ResNet-20 (:func:`robustreg.models.resnet20` is n = 3), one block per stage."""
    from robustreg.models import CifarResNet

    return CifarResNet(1, num_classes)


MODELS = {"resnet20": "resnet20", "resnet8": f"{Path(__file__).resolve()}:resnet8"}


def model_spec(name: str) -> str:
    """The ``build_model`` / ``TrainConfig.model`` spec of ``name`` (resnet8: this file's factory)."""
    return MODELS[name]


def cifar_split(runs: Path) -> Path:
    """An .npz (x_train = JPEG test images 932..9999, x_test = exact test images 0..931, NCHW uint8), written once
    into ``runs``; the trainer, the store and the evaluation read this one file."""
    import numpy as np

    from robustreg import load_data

    path = runs / f"cifar10-jpeg{FIRST}-9999-exact0-{FIRST - 1}.npz"
    if path.exists():
        return path
    if not (CIFAR_DIR / EXACT).exists():
        raise SystemExit(f"claim 4 on CIFAR-10 needs {CIFAR_DIR / EXACT} and the JPEG tar.gz beside it (set "
                         "ROBUSTREG_SHARED), or use --data digits28")
    jpeg = load_data(f"cifar10-jpeg:{CIFAR_DIR}", "test")  # official order: y_all of the npz beside the tar.gz
    with np.load(CIFAR_DIR / EXACT) as z:
        x_exact, y_exact, y_all = z["x"], z["y"], z["y_all"]
    if not np.array_equal(jpeg.y.numpy(), y_all) or not np.array_equal(y_exact, y_all[:FIRST]):
        raise SystemExit("the JPEG set's restored order does not match y_all")
    runs.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x_train=jpeg.x.numpy()[FIRST:], y_train=jpeg.y.numpy()[FIRST:],
             x_test=np.ascontiguousarray(x_exact.transpose(0, 3, 1, 2)), y_test=y_exact.astype(np.int64),
             num_classes=np.int64(10))
    tmp.replace(path)
    return path
