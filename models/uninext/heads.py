"""UNINEXT's own heads: the VL_Align classifier and the mask-feature branch of CondInst.

Names follow MasterBin-IIAU/UNINEXT@5ab0386 (``models/deformable_detr/deformable_detr.py``
``VL_Align``; ``models/ddetrs_dn.py`` ``MaskHeadSmallConv``, ``aligned_bilinear``). The dynamic
convolutions themselves are the shared :class:`models.common.dynamic_mask_head.DynamicMaskHead`
with ``coords_first=True`` (UNINEXT feeds [rel_x, rel_y, features]).

Naming: N = batch, Q = queries, T = tokens, Cm = mask feature channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class VLAlign(nn.Module):
    """GLIP dot-product classifier between queries and a (pooled) language feature.

    ``logit = q . proj(normalize(t) / 2) / exp(log_scale) + normalize(t) . bias_lang + bias0``,
    clamped to +-50000.
    """

    def __init__(self, d_model: int, lang_dim: int, prior_prob: float = 0.01) -> None:
        super().__init__()
        self.dot_product_projection_text = nn.Linear(lang_dim, d_model)
        self.log_scale = nn.Parameter(torch.zeros(1))
        self.bias_lang = nn.Parameter(torch.zeros(lang_dim))
        self.bias0 = nn.Parameter(torch.full((1,), -math.log((1 - prior_prob) / prior_prob)))

    def forward(self, queries: torch.Tensor, lang: torch.Tensor) -> torch.Tensor:
        """queries N x Q x C, lang N x T x Ct -> N x Q x T logits."""
        lang = F.normalize(lang, p=2, dim=-1)
        tokens = self.dot_product_projection_text(lang / 2.0)
        bias = lang @ self.bias_lang + self.bias0  # N x T
        logits = queries @ tokens.transpose(-1, -2) / self.log_scale.exp() + bias[:, None, :]
        return logits.clamp(-50000.0, 50000.0)


def pool_text(text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens: N x T x Ct, N x T (0/1) -> N x Ct."""
    weights = text_mask.to(text.dtype)[..., None]
    return (text * weights).sum(1) / weights.sum(1)


class MaskHeadSmallConv(nn.Module):
    """Fuses encoder memory at strides 32 -> 16 -> 8 into ``mask_channels`` features (no norm).

    Args:
        dim: d_model.
        hidden: channels of ``lay1`` (dim // 4 upstream).
        out_channels: mask feature channels (dim // 32 upstream).
    """

    def __init__(self, dim: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.lay1 = nn.Conv2d(dim, hidden, 3, padding=1)
        self.lay2 = nn.Conv2d(hidden, out_channels, 3, padding=1)
        self.lay3 = nn.Conv2d(dim, dim, 3, padding=1)
        self.lay4 = nn.Conv2d(dim, dim, 3, padding=1)
        self.jia_dcn = nn.Conv2d(dim, dim, 3, padding=1)
        for conv in (self.lay1, self.lay2, self.lay3, self.lay4, self.jia_dcn):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """[stride 8, 16, 32] N x dim maps -> N x out_channels x H/8 x W/8 (after a ReLU)."""
        x8, x16, x32 = levels
        x = F.relu(self.lay3(x32))
        x = x16 + F.interpolate(x, size=x16.shape[-2:], mode="nearest")
        x = F.relu(self.lay4(x))
        x = x8 + F.interpolate(x, size=x8.shape[-2:], mode="nearest")
        x = F.relu(self.jia_dcn(x))
        x = F.relu(self.lay1(x))
        return F.relu(self.lay2(x))


def aligned_bilinear(x: torch.Tensor, factor: int) -> torch.Tensor:
    """CondInst's corner-aligned bilinear upsampling: N x C x h x w -> N x C x fh x fw."""
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    x = F.pad(x, (0, 1, 0, 1), mode="replicate")
    x = F.interpolate(x, size=(factor * h + 1, factor * w + 1), mode="bilinear", align_corners=True)
    x = F.pad(x, (factor // 2, 0, factor // 2, 0), mode="replicate")
    return x[:, :, : factor * h, : factor * w]
