"""2-D Swin Transformer as a per-frame backbone (ReferFormer's / MUTR's ``swin_*_p4w7``).

The detection variant of Swin (``wjn922/ReferFormer@06fc218:models/swin_transformer.py``, as in
``microsoft/Swin-Transformer`` for object detection) run on every frame on its own: patch 4, a
**fixed** window of 7 (the map is zero-padded to multiples of 7 after ``norm1``; unlike Video
Swin the window never shrinks and odd blocks always shift by 3, with the -100 region mask),
patch merging at the end of stages 0-2, and a LayerNorm ``norm{i}`` on every stage output.

It is Video Swin with a one-frame window: the blocks, the masks and the merging are
:mod:`models.shared.video_swin`'s, applied to frames as clips of length 1 (the (1, 7, 7)
relative-position index equals the 2-D one). Key layout (under ``backbone.0.body.``):
``patch_embed.{proj (Conv2d), norm}``, ``layers.{i}.blocks.{j}.*``, ``layers.{i}.downsample.*``,
``norm{i}``.

Sizes: T = embed 96, depths 2/2/6/2, heads 3/6/12/24; S = 96, 2/2/18/2; B = 128, 2/2/18/2,
4/8/16/32; L = 192, 2/2/18/2, 6/12/24/48.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.shared.video_swin import (
    PatchMerging,
    SwinBlock3D,
    VideoSwinSpec,
    shifted_window_mask,
    size_arguments,
)

SWIN_SPECS: dict[str, VideoSwinSpec] = {
    "tiny": VideoSwinSpec(96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "small": VideoSwinSpec(96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "base": VideoSwinSpec(128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "large": VideoSwinSpec(192, (2, 2, 18, 2), (6, 12, 24, 48)),
}


class SwinStage2D(nn.Module):
    """``depth`` blocks (odd ones shifted) and the stage's patch merging (``downsample``)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path_rates: Sequence[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        self.window = (1, window, window)
        self.shift = (0, window // 2, window // 2)
        self.blocks = nn.ModuleList(
            SwinBlock3D(dim, num_heads, self.window, mlp_ratio, qkv_bias, drop_path_rates[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x 1 x H x W x C -> same shape (before merging)."""
        _, _, H, W, _ = x.shape
        w = self.window[1]
        padded = (1, -(-H // w) * w, -(-W // w) * w)
        mask = shifted_window_mask(padded, self.window, self.shift, x.device)
        for i, block in enumerate(self.blocks):
            if i % 2 == 0:
                x = block(x, self.window, (0, 0, 0), None)
            else:
                x = block(x, self.window, self.shift, mask)
        return x


class SwinBackbone(nn.Module):
    """2-D Swin returning each stage's normed per-frame output (strides 4, 8, 16, 32).

    Args:
        embed_dim, depths, num_heads: the size (see :data:`SWIN_SPECS`).
        window: the window (7).
        mlp_ratio, qkv_bias, patch_norm: as released (4.0, True, True).
        drop_path_rate: stochastic depth at the last block (0.2 T/S, 0.3 B/L).
        num_stages: build only the first stages (AOT / DeAOT use 3 of Swin's 4; the stochastic
            depth still ramps over all of ``depths``, as the official code builds it).

    Attributes:
        out_channels, strides: of the returned levels.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        window: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        patch_norm: bool = True,
        drop_path_rate: float = 0.2,
        in_channels: int = 3,
        num_stages: int | None = None,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} differ in length")
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=4, stride=4)
        self.patch_embed.norm = nn.LayerNorm(embed_dim) if patch_norm else None
        levels = len(depths) if num_stages is None else num_stages
        if not 1 <= levels <= len(depths):
            raise ValueError(f"num_stages {num_stages} outside 1..{len(depths)}")
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.out_channels = [embed_dim * 2**i for i in range(levels)]
        self.strides = [4 * 2**i for i in range(levels)]
        self.layers = nn.ModuleList(
            SwinStage2D(
                self.out_channels[i],
                depths[i],
                num_heads[i],
                window,
                mlp_ratio,
                qkv_bias,
                rates[sum(depths[:i]) : sum(depths[: i + 1])],
                downsample=i < levels - 1,
            )
            for i in range(levels)
        )
        for i, channels in enumerate(self.out_channels):
            self.add_module(f"norm{i}", nn.LayerNorm(channels))

    @classmethod
    def from_spec(cls, name: str, **kwargs: object) -> SwinBackbone:
        """A released size by name: ``tiny``, ``small``, ``base`` or ``large``."""
        return cls(**size_arguments(SWIN_SPECS, name, "Swin"), **kwargs)  # type: ignore[arg-type]

    def forward(self, video: torch.Tensor) -> list[torch.Tensor]:
        """Per-frame features of each level.

        Args:
            video: B x T x 3 x H x W float (normalised).

        Returns:
            One (B * T) x C_l x ceil(H / s_l) x ceil(W / s_l) tensor per level (``b t`` layout).
        """
        x = video.flatten(0, 1)
        H, W = x.shape[-2:]
        x = F.pad(x, (0, (4 - W % 4) % 4, 0, (4 - H % 4) % 4))
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1)[:, None]  # N x 1 x h x w x C
        if self.patch_embed.norm is not None:
            x = self.patch_embed.norm(x)
        outputs = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            normed = getattr(self, f"norm{i}")(x)
            outputs.append(normed[:, 0].permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x)
        return outputs
