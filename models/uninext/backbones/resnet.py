"""detectron2's ResNet (``build_resnet_backbone``), with its state-dict names.

Key layout (facebookresearch/detectron2 ``modeling/backbone/resnet.py``, as UNINEXT stores it
under ``detr.detr.backbone.0.backbone.``): ``stem.conv1.{weight,norm.*}``,
``res{2..5}.{i}.{conv1,conv2,conv3,shortcut}.{weight,norm.*}``. Each convolution carries its norm
as a child named ``norm`` and has no bias. UNINEXT's R50: depth 50, ``STRIDE_IN_1X1`` False (the
stride sits on the 3x3 conv), ``FREEZE_AT`` 0, FrozenBN, outputs res3/res4/res5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.uninext.spec import BackboneSpec


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (buffers, as detectron2)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if kind == "GN":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"unsupported ResNet norm {kind!r} (FrozenBN or GN)")


class ConvNorm(nn.Conv2d):
    """A bias-free convolution followed by its ``norm`` child (detectron2 ``Conv2d``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, *, norm: str) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.norm = _norm(norm, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    def __init__(self, cin: int, cout: int, stride: int, *, norm: str) -> None:
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride, norm=norm) if cin != cout else None
        self.conv1 = ConvNorm(cin, cout, 3, stride, norm=norm)
        self.conv2 = ConvNorm(cout, cout, 3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + skip)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 (ResNet-50/101, ``stride_in_1x1`` False)."""

    def __init__(self, cin: int, cout: int, stride: int, *, norm: str) -> None:
        super().__init__()
        width = cout // 4
        self.shortcut = ConvNorm(cin, cout, 1, stride, norm=norm) if cin != cout else None
        self.conv1 = ConvNorm(cin, width, 1, norm=norm)
        self.conv2 = ConvNorm(width, width, 3, stride, norm=norm)
        self.conv3 = ConvNorm(width, cout, 1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + skip)


_BLOCKS_PER_STAGE = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Stem(nn.Module):
    """7x7 stride-2 convolution, ReLU, 3x3 stride-2 max-pool."""

    def __init__(self, cin: int, cout: int, *, norm: str) -> None:
        super().__init__()
        self.conv1 = ConvNorm(cin, cout, 7, 2, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class ResNet(nn.Module):
    """ResNet returning res3, res4, res5 (strides 8, 16, 32).

    Args:
        spec: ``kind == "resnet"``; see :class:`models.uninext.spec.BackboneSpec`.
    """

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        if spec.depth not in _BLOCKS_PER_STAGE:
            raise ValueError(f"unsupported ResNet depth {spec.depth}")
        block = BasicBlock if spec.depth < 50 else BottleneckBlock
        self.stem = Stem(spec.in_channels, spec.stem_channels, norm=spec.norm)
        cin = spec.stem_channels
        cout = spec.res2_channels
        for index, count in enumerate(_BLOCKS_PER_STAGE[spec.depth]):
            first_stride = 1 if index == 0 else 2
            blocks = []
            for i in range(count):
                blocks.append(block(cin, cout, first_stride if i == 0 else 1, norm=spec.norm))
                cin = cout
            self.add_module(f"res{index + 2}", nn.Sequential(*blocks))
            cout *= 2
        self.out_channels = spec.out_channels
        self.size_divisibility = spec.size_divisibility

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """N x C x H x W normalised images -> [res3, res4, res5] feature maps."""
        x = self.res2(self.stem(images))
        res3 = self.res3(x)
        res4 = self.res4(res3)
        return [res3, res4, self.res5(res4)]
