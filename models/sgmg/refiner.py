"""SgMg's Multi-granularity Segmentation Optimizer (``models/decoder.py`` ``MSO``).

The 16-channel patch logits of one query at 1/8 (a 4 x 4 patch per cell) are refined twice with
the raw (not text-fused) backbone features: ``m += conv2(relu(conv1(relu(cat[m, F_1/8]))))``,
bilinear upsampling to 1/4, the same block with ``F_1/4``; ``pixel_shuffle(4)`` then gives one
logit per input pixel. Parameter names ``conv{1,2}_1div{8,4}`` match the official ``mask_refine``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiGranularityRefiner(nn.Module):
    """Args: mask_channels (16); feature_channels: (C at 1/4, C at 1/8) of the backbone."""

    def __init__(self, mask_channels: int, feature_channels: tuple[int, int]) -> None:
        super().__init__()
        c4, c8 = feature_channels
        self.conv1_1div8 = nn.Conv2d(mask_channels + c8, mask_channels, kernel_size=3, padding=1)
        self.conv2_1div8 = nn.Conv2d(mask_channels, mask_channels, kernel_size=3, padding=1)
        self.conv1_1div4 = nn.Conv2d(mask_channels + c4, mask_channels, kernel_size=3, padding=1)
        self.conv2_1div4 = nn.Conv2d(mask_channels, mask_channels, kernel_size=3, padding=1)

    def forward(
        self, patch_logits: torch.Tensor, features_4: torch.Tensor, features_8: torch.Tensor
    ) -> torch.Tensor:
        """Refine.

        Args:
            patch_logits: N x 16 x h8 x w8.
            features_4, features_8: N x C x h4 x w4 and N x C' x h8 x w8 backbone features.

        Returns:
            N x 16 x h4 x w4 (``pixel_shuffle(., 4)`` gives full-resolution logits).
        """
        m = patch_logits
        x = F.relu(torch.cat([m, features_8], 1))
        m = m + self.conv2_1div8(F.relu(self.conv1_1div8(x)))
        m = F.interpolate(m, size=features_4.shape[-2:], mode="bilinear", align_corners=False)
        x = F.relu(torch.cat([m, features_4], 1))
        return m + self.conv2_1div4(F.relu(self.conv1_1div4(x)))
