"""Networks of the image-classifier example: a small CNN to train, ResNet-50 for throughput.

Both take what ``headrace run`` reads from an image folder, ``uint8`` images ``N x H x W x 3``,
and do the scaling and channel reordering inside the model (:class:`ImageInput`), so the
exported file needs no preprocessing hook and the same bytes reach it on CPU and GPU.
ResNet-50 is written out here (bottleneck blocks, [3, 4, 6, 3] stages, as in He et al. 2015)
so the example needs no torchvision; ``width`` scales every stage (64 is the real network).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Bottleneck", "ImageInput", "ResNet50", "SmallCNN"]


class ImageInput(nn.Module):
    """``uint8 N x H x W x 3`` -> normalised ``float N x 3 x H x W``, then ``body``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return self.body(x)


class SmallCNN(nn.Module):
    """Three conv blocks and a linear head: enough for synthetic shapes, trains in seconds."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(3, 16, stride=1),
            nn.MaxPool2d(2),
            _conv_bn(16, 32, stride=1),
            nn.MaxPool2d(2),
            _conv_bn(32, 64, stride=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv_bn(cin: int, cout: int, *, stride: int, kernel: int = 3, relu: bool = True) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride here) -> 1x1 expand (x4), plus a projected shortcut if needed."""

    expansion = 4

    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        cout = mid * self.expansion
        self.residual = nn.Sequential(
            _conv_bn(cin, mid, stride=1, kernel=1),
            _conv_bn(mid, mid, stride=stride),
            _conv_bn(mid, cout, stride=1, kernel=1, relu=False),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and cin == cout
            else _conv_bn(cin, cout, stride=stride, kernel=1, relu=False)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class ResNet50(nn.Module):
    """Stem (7x7/2 conv, 3x3/2 max-pool), four bottleneck stages, global pool, linear head."""

    stages = (3, 4, 6, 3)

    def __init__(self, num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            _conv_bn(3, width, stride=2, kernel=7),
            nn.MaxPool2d(3, stride=2, padding=1),
        ]
        cin = width
        for index, blocks in enumerate(self.stages):
            mid = width * 2**index
            for block in range(blocks):
                stride = 2 if block == 0 and index > 0 else 1
                layers.append(Bottleneck(cin, mid, stride))
                cin = mid * Bottleneck.expansion
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
