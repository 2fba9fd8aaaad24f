"""Architectures, the model zoo and the model plumbing (Normalize, checkpoints, build_model, devices).

Registered as a core plugin: :func:`robustreg_register_models` adds every architecture and zoo
entry below, so ``build_model("resnet20")`` and ``robustreg list models`` find them.  Every model
takes [0, 1] images (normalisation, where needed, is a :class:`Normalize` in front) and ends in an
``nn.Linear`` head, which :func:`robustreg.embed` needs.
"""

from __future__ import annotations

from .build import build_model
from .builtin import builtin_model_specs, robustreg_register_models
from .common import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Normalize,
    PixelMean,
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
from .zoo import cache_root, digits_cnn_cache, pretrained_digits_cnn, train_digits_cnn

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
    "digits_cnn_cache",
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
