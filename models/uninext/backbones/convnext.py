"""UNINEXT's ConvNeXt (``D2ConvNeXt``), with its module names.

Layout (MasterBin-IIAU/UNINEXT@5ab0386 ``projects/UNINEXT/uninext/backbone/convnext.py``):
``downsample_layers.0`` = [conv 4x4 s4, LayerNorm], ``downsample_layers.{1,2,3}`` = [LayerNorm,
conv 2x2 s2]; ``stages.{s}.{b}.{dwconv, norm, pwconv1, pwconv2, gamma}``; ``norm1..norm3``
(channels-first LayerNorm, eps 1e-6) on the outputs of stages 1-3 (strides 8/16/32).

Upstream keeps every LayerNorm scale/shift and layer-scale ``gamma`` as an ``nn.Embedding(1, C)``
(keys ``*.weight.weight``, ``*.bias.weight``, ``*.gamma.weight``, shape 1 x C). Here they are plain
C-vectors; :mod:`models.uninext.convert` reshapes them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.uninext.spec import BackboneSpec


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of N x C x H x W maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 -> LayerNorm -> Linear 4C -> GELU -> Linear C -> layer scale, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """ConvNeXt returning the normalised outputs of stages 1-3 (res3, res4, res5)."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        dims, depths = spec.dims, spec.depths
        if len(dims) != 4 or len(depths) != 4:
            raise ValueError(f"ConvNeXt needs 4 stages, got depths {depths} dims {dims}")
        self.downsample_layers = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(spec.in_channels, dims[0], kernel_size=4, stride=4),
                    ChannelsFirstLayerNorm(dims[0], eps=1e-6),
                )
            ]
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(
                    ChannelsFirstLayerNorm(dims[i], eps=1e-6),
                    nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2),
                )
            )
        self.stages = nn.ModuleList(
            nn.Sequential(*[ConvNeXtBlock(dims[i]) for _ in range(depths[i])]) for i in range(4)
        )
        for i in range(1, 4):
            self.add_module(f"norm{i}", ChannelsFirstLayerNorm(dims[i], eps=1e-6))
        self.out_channels = spec.out_channels
        self.size_divisibility = spec.size_divisibility

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """N x C x H x W normalised images -> [res3, res4, res5] feature maps."""
        outs = []
        x = images
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            if i > 0:
                outs.append(getattr(self, f"norm{i}")(x))
        return outs
