"""UNINEXT's ViTDet-style ViT (``D2ViT``) with its simple feature pyramid, official names.

Layout (MasterBin-IIAU/UNINEXT@5ab0386 ``projects/UNINEXT/uninext/backbone/vit.py``, helpers as
detectron2 ``modeling/backbone/utils.py``): ``patch_embed.proj``, ``pos_embed`` (1 x (G*G+1) x C:
a G x G pre-training grid plus a cls slot, dropped and bicubically resized to the token grid),
``blocks.{i}.{norm1, attn.{qkv, proj, rel_pos_h, rel_pos_w}, norm2, mlp.{fc1, fc2}}``, ``fpn1.0``
(ConvTranspose 2x2 s2 -> stride 8, C/2 channels); stride 16 is the token map, stride 32 a 2x2
max-pool. No final norm. Windowed blocks are fixed at 0,1,3,4,6,7,9,10 for every depth, all
others attend globally with relative tables sized for a 1024-pixel input, linearly resized at
run time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.shared.video_swin import SwinMlp
from models.uninext.spec import BackboneSpec


def _relative_table(size: int, table: torch.Tensor) -> torch.Tensor:
    """size x size x D relative embeddings for one axis (equal query and key lengths)."""
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t()[None], size=length, mode="linear")[0].t()
    coords = torch.arange(size, device=table.device)
    return table[coords[:, None] - coords[None, :] + size - 1]


class Attention(nn.Module):
    """Multi-head self-attention with decomposed relative position terms (MViTv2 / ViTDet)."""

    def __init__(self, dim: int, num_heads: int, rel_pos_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x H x W x C -> B x H x W x C."""
        B, H, W, _ = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        rel_h = _relative_table(H, self.rel_pos_h)
        rel_w = _relative_table(W, self.rel_pos_w)
        r_q = q.reshape(-1, H, W, q.shape[-1])
        bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, rel_h)
        bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, rel_w)
        attn = attn.view(-1, H, W, H, W) + bias_h[..., :, None] + bias_w[..., None, :]
        attn = attn.view(-1, H * W, H * W).softmax(dim=-1)
        out = (attn @ v).view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4)
        return self.proj(out.reshape(B, H, W, -1))


def _window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """B x H x W x C -> (B * nW) x window x window x C, zero-padding H, W up to multiples."""
    B, H, W, C = x.shape
    pad_h, pad_w = (-H) % window, (-W) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window, window, Wp // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, C), (Hp, Wp)


def _window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    Hp, Wp = padded
    H, W = size
    B = windows.shape[0] // (Hp * Wp // window // window)
    x = windows.view(B, Hp // window, Wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    return x[:, :H, :W, :].contiguous()


class Block(nn.Module):
    """Pre-norm transformer block, windowed (``window > 0``) or global attention."""

    def __init__(self, dim: int, num_heads: int, window: int, rel_pos_size: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, window if window > 0 else rel_pos_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwinMlp(dim, dim * 4)  # fc1 -> GELU -> fc2, timm Mlp names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window > 0:
            H, W = x.shape[1:3]
            windows, padded = _window_partition(x, self.window)
            x = _window_unpartition(self.attn(windows), self.window, padded, (H, W))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Plain ViT with a simple pyramid: [stride 8 (C/2), stride 16 (C), stride 32 (C)]."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        dim = spec.embed_dim
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(
            spec.in_channels, dim, kernel_size=spec.patch_size, stride=spec.patch_size
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, spec.pretrain_grid**2 + 1, dim))
        self.blocks = nn.ModuleList(
            Block(
                dim,
                spec.num_heads,
                spec.window_size if i in spec.window_blocks else 0,
                spec.rel_pos_grid,
            )
            for i in range(spec.vit_depth)
        )
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2))
        self.pretrain_grid = spec.pretrain_grid
        self.out_channels = spec.out_channels
        self.size_divisibility = spec.size_divisibility

    def _abs_pos(self, h: int, w: int) -> torch.Tensor:
        grid = self.pretrain_grid
        pos = self.pos_embed[:, 1:].reshape(1, grid, grid, -1)
        if (grid, grid) != (h, w):
            pos = F.interpolate(
                pos.permute(0, 3, 1, 2), size=(h, w), mode="bicubic", align_corners=False
            ).permute(0, 2, 3, 1)
        return pos

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """N x C x H x W normalised images -> [res3, res4, res5] feature maps."""
        x = self.patch_embed.proj(images).permute(0, 2, 3, 1)
        x = x + self._abs_pos(x.shape[1], x.shape[2])
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return [self.fpn1(x), x, F.max_pool2d(x, kernel_size=2, stride=2)]
