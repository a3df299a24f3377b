"""ResNet-50 truncated after layer3 (stride 16), the R50-AOT-L / R50-DeAOT-L encoder (and, with
fewer blocks and a narrower stem, the project's tiny engines' encoder).

torchvision-style bottlenecks (stride in the 3x3 conv) with frozen BatchNorm; layer4 is not
built ("following STM"). State-dict layout of aot-benchmark ``networks/encoders/resnet.py``:
``conv1``, ``bn1``, ``layer{1,2,3}.N.{conv1..3, bn1..3, downsample.0/1}``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vos.layers.basic import FrozenBatchNorm2d

NormFactory = Callable[[int], nn.Module]


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm: NormFactory = FrozenBatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = norm(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet stem + layer1..3 returning [layer1, layer2, layer3, layer3] (strides 4, 8, 16, 16).

    ``layers`` = bottlenecks per stage, ``width`` = stem width (ResNet-50: (3, 4, 6), 64 ->
    outputs 256 / 512 / 1024 / 1024 channels).
    """

    def __init__(
        self,
        layers: tuple[int, int, int] = (3, 4, 6),
        width: int = 64,
        norm: NormFactory = FrozenBatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm(width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0], 1, norm)
        self.layer2 = self._make_layer(width * 2, layers[1], 2, norm)
        self.layer3 = self._make_layer(width * 4, layers[2], 2, norm)
        self.out_dims = (width * 4, width * 8, width * 16, width * 16)

    def _make_layer(self, planes: int, blocks: int, stride: int, norm: NormFactory) -> nn.Module:
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                norm(planes * 4),
            )
        layers = [Bottleneck(self._inplanes, planes, stride, downsample, norm)]
        self._inplanes = planes * 4
        layers += [Bottleneck(self._inplanes, planes, norm=norm) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """B x 3 x H x W normalised RGB -> [256 @ H/4, 512 @ H/8, 1024 @ H/16, same]."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x4 = self.layer1(x)
        x8 = self.layer2(x4)
        x16 = self.layer3(x8)
        return [x4, x8, x16, x16]
