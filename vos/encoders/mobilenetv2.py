"""MobileNetV2 at output stride 16, the AOT-T/S/B/L and DeAOT-T/S/B/L encoder.

State-dict layout of torchvision's MobileNetV2 ``features.N`` as aot-benchmark
``networks/encoders/mobilenetv2.py`` builds it: ``ConvBNReLU`` = (conv, bn, ReLU6) and
``InvertedResidual.conv`` = [pw expand ConvBNReLU (if t != 1), dw ConvBNReLU, pw-linear conv, bn].
To reach stride 16 the stride-2 block of the 160-channel stage runs with stride 1 (its own
dilation stays 1) and every later block is dilated by 2.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vos.layers.basic import FrozenBatchNorm2d

NormFactory = Callable[[int], nn.Module]

# t (expansion), c (channels), n (blocks), s (stride) of torchvision's MobileNetV2.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10%."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) + norm + ReLU6 (keys ``0``, ``1``)."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        norm: NormFactory = FrozenBatchNorm2d,
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(
                in_planes,
                out_planes,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            norm(out_planes),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block; residual when the stride is 1 and the width is unchanged."""

    def __init__(
        self,
        inp: int,
        oup: int,
        stride: int,
        dilation: int,
        expand_ratio: int,
        norm: NormFactory = FrozenBatchNorm2d,
    ) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, kernel_size=1, norm=norm))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, dilation=dilation, groups=hidden, norm=norm),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            norm(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 (stride 16) returning [stride 4, 8, 16, 16 (last conv)] feature maps.

    ``width_mult`` < 1 gives the project's tiny encoders; 1.0 is the official one with outputs
    24 / 32 / 96 / 1280 channels (:attr:`out_dims`).
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        output_stride: int = 16,
        norm: NormFactory = FrozenBatchNorm2d,
        last_channel: int = 1280,
    ) -> None:
        super().__init__()
        input_channel = make_divisible(32 * width_mult)
        last = make_divisible(last_channel * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU(3, input_channel, stride=2, norm=norm)]
        current_stride, rate = 2, 1
        stage_dims = []
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            if current_stride == output_stride:
                stride, dilation = 1, rate
                rate *= s
            else:
                stride, dilation = s, 1
                current_stride *= s
            out = make_divisible(c * width_mult)
            for i in range(n):
                if i == 0:
                    features.append(InvertedResidual(input_channel, out, stride, dilation, t, norm))
                else:
                    features.append(InvertedResidual(input_channel, out, 1, rate, t, norm))
                input_channel = out
            stage_dims.append(out)
        features.append(ConvBNReLU(input_channel, last, kernel_size=1, norm=norm))
        self.features = nn.Sequential(*features)
        # features[0:4] -> stride 4 (24 ch), [4:7] -> 8 (32), [7:14] -> 16 (96), [14:] -> 16.
        self.stage_bounds = (0, 4, 7, 14, len(features))
        self.out_dims = (stage_dims[1], stage_dims[2], stage_dims[4], last)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """B x 3 x H x W normalised RGB -> [B x C_i x H/s x W/s for s = 4, 8, 16, 16]."""
        outs = []
        for start, end in zip(self.stage_bounds[:-1], self.stage_bounds[1:], strict=True):
            for idx in range(start, end):
                x = self.features[idx](x)
            outs.append(x)
        return outs
