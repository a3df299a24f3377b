"""The FPN segmentation head of AOT / DeAOT (aot-benchmark ``networks/decoders/fpn.py::
FPNSegmentationHead``; parameter names are the checkpoint's)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vos.layers.basic import ConvGN


class FPNSegmentationHead(nn.Module):
    """Propagated tokens + encoder shortcuts -> ID logits at stride 4.

    ``conv_in`` (1x1 ConvGN) on the concatenated inputs, then stride 16 -> 8 -> 4 with the
    ``adapter_*`` 1x1 convs of the encoder shortcuts added before each ``conv_*`` 3x3 ConvGN,
    and ``conv_out`` (1x1) to ``out_dim`` ID channels.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        shortcut_dims: Sequence[int],
        hidden_dim: int = 256,
        decode_intermediate_input: bool = True,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.decode_intermediate_input = decode_intermediate_input
        self.conv_in = ConvGN(in_dim, hidden_dim, 1)
        self.conv_16x = ConvGN(hidden_dim, hidden_dim, 3)
        self.conv_8x = ConvGN(hidden_dim, hidden_dim // 2, 3)
        self.conv_4x = ConvGN(hidden_dim // 2, hidden_dim // 2, 3)
        self.adapter_16x = nn.Conv2d(shortcut_dims[-2], hidden_dim, 1)
        self.adapter_8x = nn.Conv2d(shortcut_dims[-3], hidden_dim, 1)
        self.adapter_4x = nn.Conv2d(shortcut_dims[-4], hidden_dim // 2, 1)
        self.conv_out = nn.Conv2d(hidden_dim // 2, out_dim, 1)

    def forward(
        self, inputs: Sequence[torch.Tensor], shortcuts: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Decode.

        Args:
            inputs: maps at stride 16, each B x C_i x h x w (the projected encoder feature first,
                then the propagation outputs); only the last is used unless
                ``decode_intermediate_input``.
            shortcuts: encoder outputs [stride 4, 8, 16 (raw), ...], batch B or 1 (a batch-1
                shortcut is broadcast over all B propagated sequences of the same frame).

        Returns:
            B x out_dim x H/4 x W/4 logits.
        """
        x = torch.cat(list(inputs), dim=1) if self.decode_intermediate_input else inputs[-1]
        x = F.relu(self.conv_in(x))
        x = F.relu(self.conv_16x(self.adapter_16x(shortcuts[-2]) + x))
        x = F.interpolate(
            x, size=shortcuts[-3].shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        x = F.relu(self.conv_8x(self.adapter_8x(shortcuts[-3]) + x))
        x = F.interpolate(
            x, size=shortcuts[-4].shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        x = F.relu(self.conv_4x(self.adapter_4x(shortcuts[-4]) + x))
        return self.conv_out(x)
