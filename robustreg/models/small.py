"""Small networks: the MNIST LeNet-5, ResNet-4B and the Marabou CIFAR net of the shared checkpoints,
and a CNN for scikit-learn's 8x8 digits.

The first three match the state-dict keys of ``mnist_lenet5_*.pt``, ``resnet4b.pth`` and
``cifar_marabou_large.pth`` exactly (see the checkpoints' README), so ``load_state_dict`` accepts them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import CIFAR10_MEAN, CIFAR10_STD, Normalize

__all__ = [
    "DigitsCNN",
    "LeNet5MNIST",
    "ResNet4B",
    "cifar_marabou_large",
    "digits_cnn",
    "lenet5_mnist",
    "resnet4b",
    "resnet4b_net",
]


def _check_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")


class LeNet5MNIST(nn.Module):
    """conv(32,3x3,pad 1)-ReLU-maxpool-conv(64,3x3,pad 1)-ReLU-maxpool-fc 200-ReLU-fc K; 1x28x28 in [0, 1]."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        _check_classes(num_classes)
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.linear1 = nn.Linear(64 * 7 * 7, 200)
        self.linear2 = nn.Linear(200, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.linear2(F.relu(self.linear1(x.flatten(1))))


def lenet5_mnist(num_classes: int = 10) -> LeNet5MNIST:
    """The LeNet-5 of ``mnist_lenet5_clntrained.pt`` / ``mnist_lenet5_advtrained.pt`` (1x28x28, no normalisation)."""
    return LeNet5MNIST(num_classes)


class _Block4B(nn.Module):
    """ResNet-4B block: conv-ReLU-conv (with biases, no BN) + shortcut (1x1 conv when the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class ResNet4B(nn.Module):
    """ResNet-4B (no BatchNorm): conv 3->16 s2, two layers of two blocks, fc 512->100->K; expects normalised input."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        _check_classes(num_classes)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.layer1 = nn.Sequential(_Block4B(16, 32, 2), _Block4B(32, 32, 1))
        self.layer2 = nn.Sequential(_Block4B(32, 32, 2), _Block4B(32, 32, 1))
        self.linear1 = nn.Linear(32 * 4 * 4, 100)
        self.linear2 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = self.layer2(self.layer1(x))
        return self.linear2(F.relu(self.linear1(x.flatten(1))))


def resnet4b_net(num_classes: int = 10) -> ResNet4B:
    """The bare ResNet-4B of ``resnet4b.pth`` (takes CIFAR-normalised input)."""
    return ResNet4B(num_classes)


def resnet4b(num_classes: int = 10) -> nn.Sequential:
    """ResNet-4B of ``resnet4b.pth`` behind its CIFAR-10 Normalize: ``nn.Sequential(Normalize, ResNet4B)``."""
    return nn.Sequential(Normalize(CIFAR10_MEAN, CIFAR10_STD), ResNet4B(num_classes))


def cifar_marabou_large(num_classes: int = 10) -> nn.Sequential:
    """The CIFAR-10 net of ``cifar_marabou_large.pth``: conv 32 k4 s2, conv 64 k4 s2, fc 2304-128-64-K; [0, 1] in."""
    _check_classes(num_classes)
    return nn.Sequential(
        nn.Conv2d(3, 32, 4, stride=2),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 6 * 6, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


class DigitsCNN(nn.Module):
    """Small CNN for 1x8x8 digits: two 3x3 convs (width, 2 x width; default 16, 32), max-pool, fc 128, fc K.

    An adaptive average pool to 4x4 after the convolutions lets the same weights take larger
    inputs (1x28x28 ``digits28`` or MNIST) as well; for 8x8 input it is the identity.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        _check_classes(num_classes)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be an int >= 1, got {in_channels!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an int >= 1, got {width!r}")
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(2 * width * 16, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.pool(F.max_pool2d(x, 2))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def digits_cnn(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> DigitsCNN:
    """Small CNN for scikit-learn's 1x8x8 digits (also takes 1x28x28); untrained."""
    return DigitsCNN(num_classes, in_channels, width)
