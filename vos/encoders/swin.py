"""Swin Transformer encoder with the first three stages (strides 4, 8, 16), as AOT/DeAOT use it.

State-dict layout of aot-benchmark ``networks/encoders/swin/swin_transformer.py`` (Swin-B) and
of the ICCV-2023 RVOS challenge's ``soc_test/AOT`` copy (Swin-L, window 12):
``patch_embed.{proj,norm}``, ``layers.i.blocks.j.{norm1, attn.{qkv, proj,
relative_position_bias_table, relative_position_index}, norm2, mlp.fc1, mlp.fc2}``,
``layers.{0,1}.downsample.{norm,reduction}``, ``norm0..2``. Only three stages are built (no
stage 4); the 4th output repeats the 3rd. Inside a block the map is zero-padded at the bottom /
right to a multiple of the window AFTER ``norm1``; padded tokens take part in window attention
(only the shift mask applies) and are cropped afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from models.common.video_swin import SwinMlp
from vos.layers.basic import DropPath


def relative_position_index(window: int) -> torch.Tensor:
    """``window^2 x window^2`` int64 index into the (2w-1)^2-row relative bias table."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """B x H x W x C -> (B * nW) x window^2 x C."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """(B * nW) x window^2 x C -> B x H x W x C."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


@lru_cache(maxsize=16)
def shifted_window_mask(
    hp: int, wp: int, window: int, shift: int, device: torch.device
) -> torch.Tensor:
    """nW x window^2 x window^2 additive mask (0 / -100) for shifted windows on a padded map."""
    img = torch.zeros(1, hp, wp, 1, device=device)
    regions = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    count = 0
    for hs in regions:
        for ws in regions:
            img[:, hs, ws, :] = count
            count += 1
    windows = window_partition(img, window).squeeze(-1)  # nW x window^2
    diff = windows[:, None, :] - windows[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B*nW) x N x C; mask: nW x N x N additive or None."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int, shift: int, drop_path: float) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwinMlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x: B x (h*w) x C."""
        b, _, c = x.shape
        win = self.window
        shortcut = x
        y = self.norm1(x).view(b, h, w, c)
        pad_r = (win - w % win) % win
        pad_b = (win - h % win) % win
        y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        mask = None
        if self.shift > 0:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shifted_window_mask(hp, wp, win, self.shift, y.device).to(y.dtype)
        y = window_reverse(self.attn(window_partition(y, win), mask), win, hp, wp)
        if self.shift > 0:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :h, :w, :].reshape(b, h * w, c)
        x = shortcut + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1
        )
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        drop_paths: Sequence[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, drop_paths[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, h, w)
        return x


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int = 4) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        _, _, h, w = x.shape
        x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.proj(x)
        b, c, hh, ww = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, hh, ww)


class SwinEncoder(nn.Module):
    """Swin stages 1-3 (of ``depths``' four) with a LayerNorm per output.

    Swin-B: ``embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), window=7``; the
    challenge's Swin-L: ``embed_dim=192, heads=(6, 12, 24, 48), window=12``.
    """

    def __init__(
        self,
        embed_dim: int = 128,
        depths: Sequence[int] = (2, 2, 18, 2),
        num_heads: Sequence[int] = (4, 8, 16, 32),
        window: int = 7,
        drop_path_rate: float = 0.3,
    ) -> None:
        super().__init__()
        self.num_stages = len(depths) - 1
        self.patch_embed = PatchEmbed(embed_dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i in range(self.num_stages):
            start = sum(depths[:i])
            self.layers.append(
                SwinStage(
                    embed_dim * 2**i,
                    depths[i],
                    num_heads[i],
                    window,
                    rates[start : start + depths[i]],
                    downsample=i < self.num_stages - 1,
                )
            )
        dims = [embed_dim * 2**i for i in range(self.num_stages)]
        for i, dim in enumerate(dims):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))
        self.out_dims = (*dims, dims[-1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """B x 3 x H x W normalised RGB -> [stride 4, 8, 16, 16] maps (C, 2C, 4C, 4C)."""
        x = self.patch_embed(x)
        b, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        outs = []
        for i, stage in enumerate(self.layers):
            x = stage(x, h, w)
            norm = getattr(self, f"norm{i}")
            outs.append(norm(x).view(b, h, w, -1).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x, h, w)
                h, w = (h + 1) // 2, (w + 1) // 2
        outs.append(outs[-1])
        return outs
