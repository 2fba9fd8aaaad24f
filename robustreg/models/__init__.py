"""Architectures, the model zoo and the model plumbing (Normalize, checkpoints, build_model, devices).

Registered as a core plugin: :func:`robustreg_register_models` adds every architecture and zoo
entry below, so ``build_model("resnet20")`` and ``robustreg list models`` find them.  Every model
takes [0, 1] images (normalisation, where needed, is a :class:`Normalize` in front) and ends in an
``nn.Linear`` head, which :func:`robustreg.embed` needs.
"""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl
from .common import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Normalize,
    PixelMean,
    build_model,
    load_checkpoint,
    load_state_dict_file,
    parse_normalize,
    resolve_device,
    set_pixel_mean,
)
from .resnet import CifarResNet, PreActResNet, ResNet, preact_resnet18, resnet18, resnet20, resnet110
from .small import (
    DigitsCNN,
    LeNet5MNIST,
    ResNet4B,
    cifar_marabou_large,
    digits_cnn,
    lenet5_mnist,
    resnet4b,
    resnet4b_net,
)
from .wide_resnet import WideResNet, wide_resnet, wrn_28_10, wrn_34_10
from .zoo import cache_root, pretrained_digits_cnn, train_digits_cnn

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CifarResNet",
    "DigitsCNN",
    "LeNet5MNIST",
    "Normalize",
    "PixelMean",
    "PreActResNet",
    "ResNet",
    "ResNet4B",
    "WideResNet",
    "build_model",
    "builtin_model_specs",
    "cache_root",
    "cifar_marabou_large",
    "digits_cnn",
    "lenet5_mnist",
    "load_checkpoint",
    "load_state_dict_file",
    "parse_normalize",
    "preact_resnet18",
    "pretrained_digits_cnn",
    "resnet4b",
    "resnet4b_net",
    "resnet18",
    "resnet20",
    "resnet110",
    "resolve_device",
    "robustreg_register_models",
    "set_pixel_mean",
    "train_digits_cnn",
    "wide_resnet",
    "wrn_28_10",
    "wrn_34_10",
]

_CIFAR = (3, 32, 32)

# name -> (factory, summary, num_classes, input_shape)
_MODELS: dict[str, tuple[Any, str, int, tuple[int, ...]]] = {
    "lenet5-mnist": (lenet5_mnist, "LeNet-5 of the shared mnist_lenet5_*.pt checkpoints (1x28x28)", 10, (1, 28, 28)),
    "resnet4b": (resnet4b, "ResNet-4B of resnet4b.pth behind its CIFAR-10 Normalize", 10, _CIFAR),
    "cifar-marabou-large": (cifar_marabou_large, "small CIFAR-10 conv net of cifar_marabou_large.pth", 10, _CIFAR),
    "digits-cnn": (digits_cnn, "small CNN for 1x8x8 scikit-learn digits (untrained)", 10, (1, 8, 8)),
    "digits-cnn-pretrained": (
        pretrained_digits_cnn,
        "digits-cnn trained here on the digits train split (~98% test), cached in $ROBUSTREG_CACHE",
        10,
        (1, 8, 8),
    ),
    # the ResNets for CIFAR: He et al. 2016 (arXiv:1512.03385; pre-activation: arXiv:1603.05027)
    "resnet20": (resnet20, "ResNet-20 for CIFAR, 16-32-64 channels", 10, _CIFAR),
    "resnet110": (resnet110, "ResNet-110 for CIFAR, 16-32-64 channels", 10, _CIFAR),
    "preact-resnet18": (preact_resnet18, "PreAct-ResNet-18, CIFAR layout", 10, _CIFAR),
    "resnet18": (resnet18, "ResNet-18, CIFAR variant with a 3x3 stem", 10, _CIFAR),
    "wrn-34-10": (wrn_34_10, "WideResNet-34-10, the usual adversarial-training CIFAR layout", 10, _CIFAR),
    "wrn-28-10": (wrn_28_10, "WideResNet-28-10, CIFAR layout", 10, _CIFAR),
}


@hookimpl
def robustreg_register_models(registrar: Any) -> None:
    """Register robustreg's own architectures and zoo entries."""
    for name, (factory, summary, num_classes, shape) in _MODELS.items():
        registrar.add_model(name, factory, summary=summary, num_classes=num_classes, input_shape=shape)


def builtin_model_specs() -> dict[str, Any]:
    """``{name: ModelSpec}`` of the built-in models, without building a full registry."""
    from ..registry import Registrar

    sink: dict[str, dict[str, Any]] = {"models": {}}
    robustreg_register_models(Registrar(__name__, sink))
    return sink["models"]
