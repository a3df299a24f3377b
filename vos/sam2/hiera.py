"""The SAM 2 image encoder: a Hiera trunk and an FPN neck without output convs.

Parameter names equal the official checkpoint's ``image_encoder.*`` keys
(facebookresearch/sam2@2b90b9f ``sam2/modeling/backbones/{hieradet,image_encoder,utils}.py``).
Features are channels-last (B x H x W x C) inside the trunk, channels-first outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vos.sam2.layers import MLP
from vos.sam2.position import sine_position_map
from vos.sam2.spec import HieraSpec


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """B x H x W x C -> (B * nW) x window x window x C, zero-padded; also the padded (H, W)."""
    b, h, w, c = x.shape
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`, cropping the padding: -> B x H x W x C."""
    hp, wp = padded
    b = windows.shape[0] // (hp * wp // window // window)
    x = windows.reshape(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, : size[0], : size[1]]


def _pool(x: torch.Tensor) -> torch.Tensor:
    """2 x 2 max-pool of a B x H x W x C map (the query pooling between stages)."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=2, stride=2).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Attention whose queries may be pooled 2x (``qkv`` and ``proj`` as in the checkpoint)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, pool_q: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.pool_q = pool_q
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x H x W x dim -> B x H' x W' x dim_out (H' = H/2 when pooling)."""
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = torch.unbind(qkv, 2)
        if self.pool_q:
            q = _pool(q.reshape(b, h, w, -1))
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """A pre-norm Hiera block; windowed (``window`` > 0) or global; optionally pooling and
    widening (the first block of a stage: ``proj`` projects the shortcut)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, window: int, pool_q: bool) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window = window
        self.pool_q = pool_q
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, pool_q)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, 4 * dim_out, dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x H x W x dim -> B x H' x W' x dim_out."""
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.pool_q:
                shortcut = _pool(shortcut)
        window = self.window
        if window > 0:
            size = x.shape[1:3]
            x, padded = window_partition(x, window)
        x = self.attn(x)
        if self.pool_q and window > 0:
            # The pooled windows are half as wide; re-pad against the pooled map's size.
            window = self.window // 2
            size = shortcut.shape[1:3]
            padded = tuple(s + (window - s % window) % window for s in size)
        if self.window > 0:
            x = window_unpartition(x, window, padded, size)  # type: ignore[arg-type]
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """7 x 7 stride-4 convolution, channels-last output."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """The hierarchical trunk: four stages at strides 4, 8, 16, 32."""

    def __init__(self, spec: HieraSpec) -> None:
        super().__init__()
        self.spec = spec
        dim, heads = spec.embed_dim, spec.num_heads
        stage_ends = [sum(spec.stages[: i + 1]) - 1 for i in range(len(spec.stages))]
        self.stage_ends = stage_ends
        pool_blocks = {end + 1 for end in stage_ends[:-1]}
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *spec.window_pos_embed_bkg))
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, dim, spec.window_spec[0], spec.window_spec[0])
        )
        self.blocks = nn.ModuleList()
        stage = 0
        for i in range(sum(spec.stages)):
            # The window lags one block behind a stage change (hieradet.py).
            window = 0 if i in spec.global_att_blocks else spec.window_spec[stage]
            dim_out = dim
            if i - 1 in stage_ends:
                dim_out, heads, stage = 2 * dim, 2 * heads, stage + 1
            self.blocks.append(MultiScaleBlock(dim, dim_out, heads, window, i in pool_blocks))
            dim = dim_out

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        pos = pos + win.tile(1, 1, h // win.shape[-2], w // win.shape[-1])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """B x 3 x S x S -> per stage B x C_i x S/4/2^i x S/4/2^i (stride 4 first)."""
        x = self.patch_embed(x)
        x = x + self._pos_embed(*x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


class _Lateral(nn.Module):
    """One lateral 1 x 1 conv, named ``convs.i.conv`` as in the checkpoint."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """Lateral 1 x 1 convs to 256 channels, nearest x2 top-down fusion on the two coarsest
    levels only (``fpn_top_down_levels: [2, 3]``), a sine position map per level."""

    def __init__(self, trunk_channels: tuple[int, ...], d_model: int = 256) -> None:
        super().__init__()
        # convs[0] takes the coarsest level (backbone_channel_list is coarse first).
        self.convs = nn.ModuleList(_Lateral(c, d_model) for c in reversed(trunk_channels))
        self.top_down_levels = (2, 3)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Trunk maps (fine first) -> fused maps at 256 channels (fine first)."""
        n = len(xs) - 1
        out: list[torch.Tensor] = [xs[0]] * len(xs)
        prev: torch.Tensor | None = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                prev = lateral + F.interpolate(prev.float(), scale_factor=2.0, mode="nearest")
            else:
                prev = lateral
            out[i] = prev
        return out


class ImageEncoder(nn.Module):
    """Trunk + neck, dropping the stride-32 level (``scalp: 1``)."""

    def __init__(self, spec: HieraSpec) -> None:
        super().__init__()
        self.trunk = Hiera(spec)
        self.neck = FpnNeck(spec.channels)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """B x 3 x S x S -> (maps, position maps), three levels at strides 4, 8, 16."""
        feats = self.neck(self.trunk(x))[:-1]
        pos = [
            sine_position_map(256, f.shape[-2], f.shape[-1], f.device).to(f.dtype) for f in feats
        ]
        return feats, [p.expand(f.shape[0], -1, -1, -1) for p, f in zip(pos, feats, strict=True)]
