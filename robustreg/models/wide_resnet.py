"""Wide residual networks: "Wide Residual Networks", Zagoruyko and Komodakis, 2016 (arXiv:1605.07146).

The CIFAR layout used by Madry et al.'s and TRADES' robust models (WRN-34-10) and by many later
defenses (WRN-28-10): pre-activation blocks, 16 -> 16k, 32k, 64k channels, (depth - 4) / 6 blocks per
stage, a final BN-ReLU, global average pool and an ``nn.Linear`` head named ``fc``.  Module names
follow that layout (``conv1``, ``block1.layer.0.bn1``, ``convShortcut``, ``bn1``, ``fc``) so its
checkpoints load; TRADES' checkpoints also carry an unused ``sub_block1`` (load those with
``strict=False``).  Takes [0, 1] input, no normalisation inside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WideResNet", "wide_resnet", "wrn_28_10", "wrn_34_10"]


class _WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = cin == cout and stride == 1
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return out + shortcut


class _Stage(nn.Module):
    def __init__(self, n: int, cin: int, cout: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[_WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, drop_rate) for i in range(n)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-widen (Zagoruyko and Komodakis 2016, arXiv:1605.07146), the Madry/TRADES CIFAR layout."""

    def __init__(
        self, depth: int = 34, widen: int = 10, num_classes: int = 10, drop_rate: float = 0.0, in_channels: int = 3
    ) -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"depth must be an int 6n+4 >= 10 (e.g. 28, 34), got {depth!r}")
        if not isinstance(widen, int) or widen < 1:
            raise ValueError(f"widen must be an int >= 1, got {widen!r}")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = _Stage(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = _Stage(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = _Stage(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def wide_resnet(depth: int = 34, widen: int = 10, num_classes: int = 10, drop_rate: float = 0.0) -> WideResNet:
    """WideResNet-depth-widen for CIFAR (Zagoruyko and Komodakis 2016, arXiv:1605.07146)."""
    return WideResNet(depth, widen, num_classes, drop_rate)


def wrn_34_10(num_classes: int = 10, drop_rate: float = 0.0) -> WideResNet:
    """WRN-34-10 (46M params), the Madry / TRADES CIFAR-10 robust-training architecture."""
    return WideResNet(34, 10, num_classes, drop_rate)


def wrn_28_10(num_classes: int = 10, drop_rate: float = 0.0) -> WideResNet:
    """WRN-28-10 (36M params), CIFAR layout (Zagoruyko and Komodakis 2016, arXiv:1605.07146)."""
    return WideResNet(28, 10, num_classes, drop_rate)
