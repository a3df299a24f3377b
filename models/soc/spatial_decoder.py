"""SOC's mask-feature decoder: MTTR's FPN-like spatial decoder over the encoder memory.

Encoder memory at stride 32 -> two 3x3 conv + GN(8) + ReLU, then + memory at 16x, + memory at 8x
and + the raw stride-4 backbone map, each through a 1x1 adapter and a nearest upsampling of the
running map, channels halving at every step (256 -> 128 -> 64 -> 32 -> 16), and a last 3x3 conv to
``mask_kernels_dim`` (8) channels at stride 4. Names follow the checkpoint
(``RobertLuo1/NeurIPS2023_SOC@76b2915:models/segmentation.py`` ``FPNSpatialDecoder``):
``lay1-5``, ``gn1-5``, ``adapter1-3``, ``out_lay``.

Naming: N = clips x frames, C = channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FPNSpatialDecoder(nn.Module):
    """Top-down FPN from the stride-32 memory to ``mask_kernels_dim`` features at stride 4.

    Args:
        context_dim: channels of the stride-32 input (d_model).
        fpn_dims: channels of the finer inputs, coarse to fine: memory 16x, memory 8x, and
            optionally the backbone stride-4 map (three entries add the fifth conv).
        mask_kernels_dim: output channels.
        norm_groups: GroupNorm groups.
    """

    def __init__(
        self,
        context_dim: int,
        fpn_dims: Sequence[int],
        mask_kernels_dim: int = 8,
        norm_groups: int = 8,
    ) -> None:
        super().__init__()
        if len(fpn_dims) not in (2, 3):
            raise ValueError(f"fpn_dims holds 2 or 3 levels, got {len(fpn_dims)}")
        inter = [context_dim // 2**i for i in range(5)]
        self.lay1 = nn.Conv2d(context_dim, inter[0], 3, padding=1)
        self.gn1 = nn.GroupNorm(norm_groups, inter[0])
        self.lay2 = nn.Conv2d(inter[0], inter[1], 3, padding=1)
        self.gn2 = nn.GroupNorm(norm_groups, inter[1])
        self.lay3 = nn.Conv2d(inter[1], inter[2], 3, padding=1)
        self.gn3 = nn.GroupNorm(norm_groups, inter[2])
        self.lay4 = nn.Conv2d(inter[2], inter[3], 3, padding=1)
        self.gn4 = nn.GroupNorm(norm_groups, inter[3])
        self.adapter1 = nn.Conv2d(fpn_dims[0], inter[1], 1)
        self.adapter2 = nn.Conv2d(fpn_dims[1], inter[2], 1)
        self.extra_level = len(fpn_dims) == 3
        if self.extra_level:
            self.adapter3 = nn.Conv2d(fpn_dims[2], inter[3], 1)
            self.lay5 = nn.Conv2d(inter[3], inter[4], 3, padding=1)
            self.gn5 = nn.GroupNorm(norm_groups, inter[4])
        self.out_lay = nn.Conv2d(
            inter[4] if self.extra_level else inter[3], mask_kernels_dim, 3, padding=1
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, top: torch.Tensor, finer: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decode.

        Args:
            top: N x context_dim x h32 x w32 (encoder memory at stride 32).
            finer: coarse to fine, N x fpn_dims[i] x h x w: memory 16x, memory 8x[, backbone 4x].

        Returns:
            N x mask_kernels_dim x h x w at the finest input's size.
        """
        x = F.relu(self.gn1(self.lay1(top)))
        x = F.relu(self.gn2(self.lay2(x)))
        steps = [(self.adapter1, self.lay3, self.gn3), (self.adapter2, self.lay4, self.gn4)]
        if self.extra_level:
            steps.append((self.adapter3, self.lay5, self.gn5))
        if len(finer) != len(steps):
            raise ValueError(f"expected {len(steps)} finer levels, got {len(finer)}")
        for (adapter, conv, norm), feature in zip(steps, finer, strict=True):
            lateral = adapter(feature)
            x = lateral + F.interpolate(x, size=lateral.shape[-2:], mode="nearest")
            x = F.relu(norm(conv(x)))
        return self.out_lay(x)
