"""robustreg's own models as a plugin registers them: the table of architectures and zoo entries, the
``robustreg_register_models`` hook (re-exported by :mod:`robustreg.models`, the core plugin), and the same
entries without a full registry (:func:`builtin_model_specs`, what ``build_model`` looks a name up in when
it is given no registry)."""

from __future__ import annotations

from typing import Any

from ..registry.hookspecs import hookimpl
from ..registry.registrar import Registrar
from .resnet import preact_resnet18, resnet18, resnet20, resnet110
from .small import cifar_marabou_large, digits_cnn, lenet5_mnist, resnet4b
from .wide_resnet import wrn_28_10, wrn_34_10
from .zoo import pretrained_digits_cnn

__all__ = ["PLUGIN_NAME", "builtin_model_specs", "robustreg_register_models"]

PLUGIN_NAME = "robustreg.models"  # the core plugin that registers these (robustreg.registry.CORE_PLUGINS)
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
    sink: dict[str, dict[str, Any]] = {"models": {}}
    robustreg_register_models(Registrar(PLUGIN_NAME, sink))
    return sink["models"]
