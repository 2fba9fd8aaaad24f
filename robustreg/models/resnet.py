"""ResNets for 32x32 inputs (CIFAR): ResNet-20/110, ResNet-18 and PreAct-ResNet-18.

- ResNet-20 / ResNet-110: "Deep Residual Learning for Image Recognition", He et al., 2016
  (arXiv:1512.03385), section 4.2: 3 stages of n basic blocks with 16, 32, 64 channels (6n+2 layers),
  option-A shortcuts (strided identity, zero-padded channels; no parameters) by default, option B
  (1x1 conv + BN) with ``shortcut="B"``.
- ResNet-18: the ImageNet ResNet-18 with a 3x3 stride-1 stem and no max-pool, as commonly used on
  CIFAR (e.g. by the TRADES and MART papers); keys ``conv1, bn1, layer1..4, linear``.
- PreAct-ResNet-18: "Identity Mappings in Deep Residual Networks", He et al., 2016
  (arXiv:1603.05027), in the CIFAR layout of "Fast is better than free" / "Overfitting in
  adversarially robust deep learning" (keys ``conv1, layer1..4, bn, linear``).

All take [0, 1] input (no normalisation inside; wrap with :class:`Normalize` if needed), end in an
``nn.Linear`` head and use a global average pool, so sizes other than 32x32 also work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CifarResNet",
    "PreActResNet",
    "ResNet",
    "preact_resnet18",
    "resnet18",
    "resnet20",
    "resnet110",
]


def _check(num_classes: int, in_channels: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise ValueError(f"in_channels must be an int >= 1, got {in_channels!r}")


class _ShortcutA(nn.Module):
    """Option A: subsample spatially by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or cin != cout:
            if shortcut == "A":
                self.shortcut = _ShortcutA(cin, cout, stride)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet with 6n+2 layers: stages of n blocks with 16, 32, 64 channels."""

    def __init__(self, n: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> None:
        super().__init__()
        _check(num_classes, in_channels)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n (blocks per stage) must be an int >= 1, got {n!r}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (zero-padded identity) or 'B' (1x1 conv), got {shortcut!r}")
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        stages = []
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(_BasicBlock(cin, cout, stride if i == 0 else 1, shortcut))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)
        _init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet20(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016, arXiv:1512.03385): 3x3 basic blocks, 16-32-64 channels, 0.27M params."""
    return CifarResNet(3, num_classes, in_channels, shortcut)


def resnet110(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-110 for CIFAR (He et al. 2016, arXiv:1512.03385): 18 blocks per stage, 16-32-64 channels, 1.7M params."""
    return CifarResNet(18, num_classes, in_channels, shortcut)


class ResNet(nn.Module):
    """ResNet with basic blocks and a 3x3 stride-1 stem (CIFAR variant): 64-128-256-512 channels."""

    def __init__(self, num_blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        _check(num_classes, in_channels)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        layers = []
        for i, (cout, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            blocks = []
            for j in range(n):
                blocks.append(_BasicBlock(cin, cout, (1 if i == 0 else 2) if j == 0 else 1, "B"))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet18(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-18 (He et al. 2016, arXiv:1512.03385), CIFAR variant: 3x3 stem, no max-pool; 11.2M params."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels)


class _PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet (He et al. 2016, arXiv:1603.05027), CIFAR layout with a final BN-ReLU."""

    def __init__(self, num_blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        _check(num_classes, in_channels)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        cin = 64
        layers = []
        for i, (cout, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            blocks = []
            for j in range(n):
                blocks.append(_PreActBlock(cin, cout, (1 if i == 0 else 2) if j == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def preact_resnet18(num_classes: int = 10, in_channels: int = 3) -> PreActResNet:
    """PreAct-ResNet-18 (He et al. 2016, arXiv:1603.05027), the CIFAR layout of fast/robust-overfitting AT."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels)


def _init_kaiming(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
