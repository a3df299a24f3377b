"""Cutie's object transformer (``QueryTransformer``) and object summarizer.

Layouts as hkchengrex/Cutie@ec5cdd4 ``cutie/model/transformer/object_transformer.py``,
``transformer_layers.py``, ``object_summarizer.py`` and ``positional_encoding.py`` (the
``inv_freq`` buffers are in the checkpoint). Attention is ``nn.MultiheadAttention`` (keys
``in_proj_weight``, ``in_proj_bias``, ``out_proj.*``), batch first.

Naming: B = batch (2 with flip augmentation), N = objects, Q = object queries, C = embed dim,
h x w = the stride-16 map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vos.cutie.blocks import CAResBlock, GConv2d, aggregate, full_precision


class SinePositionEncoding(nn.Module):
    """2-D sine/cosine encoding, x then y, sin and cos interleaved; coordinates normalised to
    [0, ``scale``]. ``forward(h, w)`` -> h x w x C' (C' = 4 * ceil(C / 4))."""

    def __init__(self, dim: int, scale: float, temperature: float) -> None:
        super().__init__()
        half = int(math.ceil(dim / 4) * 2)
        self.half = half
        inv_freq = 1.0 / (temperature ** (torch.arange(0, half, 2).float() / half))
        self.register_buffer("inv_freq", inv_freq)
        self.scale = scale
        self.eps = 1e-6

    def forward(self, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        device = self.inv_freq.device
        pos_y = torch.arange(height, device=device, dtype=self.inv_freq.dtype)
        pos_x = torch.arange(width, device=device, dtype=self.inv_freq.dtype)
        pos_y = pos_y / (pos_y[-1] + self.eps) * self.scale
        pos_x = pos_x / (pos_x[-1] + self.eps) * self.scale
        emb_y = _interleaved_sin_cos(torch.outer(pos_y, self.inv_freq))  # h x half
        emb_x = _interleaved_sin_cos(torch.outer(pos_x, self.inv_freq))  # w x half
        emb = torch.zeros((height, width, 2 * self.half), device=device, dtype=dtype)
        emb[:, :, : self.half] = emb_x
        emb[:, :, self.half :] = emb_y.unsqueeze(1)
        return emb


def _interleaved_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2, -1)


class SelfAttention(nn.Module):
    """Pre-norm self-attention; the residual is taken after the norm (official order).
    Positional encoding on queries and keys."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        with_pe = x + pe
        return x + self.self_attn(with_pe, with_pe, x, need_weights=False)[0]


class CrossAttention(nn.Module):
    """Cross-attention from ``x`` to ``mem``; queries and keys get their positional encodings,
    values do not; optional input norm (the residual is taken after it)."""

    def __init__(self, dim: int, heads: int, *, norm: bool = True) -> None:
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        mem: torch.Tensor,
        x_pe: torch.Tensor,
        mem_pe: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.norm(x)
        out = self.cross_attn(x + x_pe, mem + mem_pe, mem, attn_mask=attn_mask, need_weights=False)
        return x + out[0]


class FFN(nn.Module):
    """Pre-norm feed-forward block with the residual before the norm."""

    def __init__(self, dim: int, ff_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, ff_dim)
        self.linear2 = nn.Linear(ff_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear2(F.relu(self.linear1(self.norm(x))))


class PixelFFN(nn.Module):
    """A :class:`CAResBlock` on the pixel tokens: (B*N) x hw x C -> B x N x C x h x w."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.conv = CAResBlock(dim, dim)

    def forward(self, tokens: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        batch, objects, height, width = shape
        maps = tokens.view(batch * objects, height, width, self.dim).permute(0, 3, 1, 2)
        out = self.conv(maps.contiguous())
        return out.view(batch, objects, self.dim, height, width)


class QueryTransformerBlock(nn.Module):
    """Queries read the pixels (masked), attend to each other, then the pixels read the
    queries."""

    def __init__(self, dim: int, heads: int, ff_dim: int) -> None:
        super().__init__()
        self.read_from_pixel = CrossAttention(dim, heads)
        self.self_attn = SelfAttention(dim, heads)
        self.ffn = FFN(dim, ff_dim)
        self.read_from_query = CrossAttention(dim, heads, norm=False)
        self.pixel_ffn = PixelFFN(dim)

    def forward(
        self,
        query: torch.Tensor,
        pixel: torch.Tensor,
        query_pe: torch.Tensor,
        pixel_pe: torch.Tensor,
        attn_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query, query_pe: (B*N) x Q x C; pixel: B x N x C x h x w; pixel_pe: (B*N) x hw x C;
        attn_mask: (B*N*heads) x Q x hw bool (True = blocked) -> (query, pixel)."""
        batch, objects, _, height, width = pixel.shape
        tokens = pixel.flatten(3, 4).flatten(0, 1).transpose(1, 2).contiguous()
        query = self.read_from_pixel(query, tokens, query_pe, pixel_pe, attn_mask=attn_mask)
        query = self.ffn(self.self_attn(query, query_pe))
        tokens = self.read_from_query(tokens, query, pixel_pe, query_pe)
        return query, self.pixel_ffn(tokens, (batch, objects, height, width))


class QueryTransformer(nn.Module):
    """The object transformer: object queries initialised from the object memory refine the
    per-object pixel readout with foreground / background masked attention."""

    def __init__(
        self,
        dim: int,
        heads: int,
        ff_dim: int,
        num_queries: int,
        num_blocks: int,
        pe_scale: float,
        pe_temperature: float,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = heads
        self.num_queries = num_queries
        self.query_init = nn.Embedding(num_queries, dim)
        self.query_emb = nn.Embedding(num_queries, dim)
        self.summary_to_query_init = nn.Linear(dim, dim)
        self.summary_to_query_emb = nn.Linear(dim, dim)
        self.pixel_init_proj = GConv2d(dim, dim, kernel_size=1)
        self.pixel_emb_proj = GConv2d(dim, dim, kernel_size=1)
        self.spatial_pe = SinePositionEncoding(dim, pe_scale, pe_temperature)
        self.blocks = nn.ModuleList(
            QueryTransformerBlock(dim, heads, ff_dim) for _ in range(num_blocks)
        )
        self.mask_pred = nn.ModuleList(
            nn.Sequential(nn.ReLU(), GConv2d(dim, 1, kernel_size=1)) for _ in range(num_blocks + 1)
        )

    def forward(self, pixel: torch.Tensor, obj_memory: torch.Tensor) -> torch.Tensor:
        """pixel: B x N x C x h x w fused readout; obj_memory: B x N x T x Q x (C + 1) running
        sums with the accumulated area last -> B x N x C x h x w."""
        batch, objects, _, height, width = pixel.shape
        steps = obj_memory.shape[2]
        memory = obj_memory.reshape(batch * objects, steps, self.num_queries, self.dim + 1)
        sums = memory[..., :-1].sum(dim=1)
        area = memory[..., -1:].sum(dim=1)
        values = sums / (area + 1e-4)
        query = self.query_init.weight.unsqueeze(0) + self.summary_to_query_init(values)
        query_pe = self.query_emb.weight.unsqueeze(0) + self.summary_to_query_emb(values)

        pixel_emb = self.pixel_emb_proj(pixel).flatten(3, 4).flatten(0, 1).transpose(1, 2)
        spatial = self.spatial_pe(height, width, pixel.dtype).flatten(0, 1).unsqueeze(0)
        pixel_pe = spatial + pixel_emb  # (B*N) x hw x C
        pixel = self.pixel_init_proj(pixel)

        attn_mask = self._attention_mask(self.mask_pred[0](pixel).squeeze(2))
        for i, block in enumerate(self.blocks):
            query, pixel = block(query, pixel, query_pe, pixel_pe, attn_mask)
            if i + 1 < len(self.blocks):  # the official also computes an unused last mask
                attn_mask = self._attention_mask(self.mask_pred[i + 1](pixel).squeeze(2))
        return pixel

    def _attention_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """B x N x h x w auxiliary logits -> (B*N*heads) x Q x hw bool, True = blocked: the first
        Q/2 queries see only the object's aggregated arg-max region, the others only the rest;
        a query that would see nothing sees everything."""
        scores = aggregate(logits.sigmoid(), dim=1)
        foreground = (scores[:, 1:] >= scores.max(dim=1, keepdim=True)[0]).flatten(2)
        half = self.num_queries // 2
        shape = (-1, -1, self.num_heads, half, -1)
        blocked_fg = (~foreground)[:, :, None, None].expand(shape)
        blocked_bg = foreground[:, :, None, None].expand(shape)
        mask = torch.cat([blocked_fg.flatten(0, 2), blocked_bg.flatten(0, 2)], dim=1)
        all_blocked = mask.all(dim=-1, keepdim=True)
        return mask & ~all_blocked


class ObjectSummarizer(nn.Module):
    """Per-object summaries of the mask value: Q/2 foreground and Q/2 background weighted
    poolings, returned as sums with the pooled area in the last channel."""

    def __init__(
        self, value_dim: int, dim: int, num_summaries: int, pe_scale: float, pe_temperature: float
    ) -> None:
        super().__init__()
        self.num_summaries = num_summaries
        self.pos_enc = SinePositionEncoding(dim, pe_scale, pe_temperature)
        self.input_proj = nn.Linear(value_dim, dim)
        self.feature_pred = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.weights_pred = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, num_summaries)
        )

    def forward(self, masks: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """masks: B x N x H x W in [0, 1]; value: B x N x Cv x h x w -> B x N x Q x (C + 1)."""
        height, width = value.shape[-2:]
        masks = F.interpolate(masks, size=(height, width), mode="area").unsqueeze(-1)
        half = self.num_summaries // 2
        allowed = torch.cat(
            [masks.expand(-1, -1, -1, -1, half), (1 - masks).expand(-1, -1, -1, -1, half)], -1
        )
        value = self.input_proj(value.permute(0, 1, 3, 4, 2))
        value = value + self.pos_enc(height, width, value.dtype)
        with full_precision(value):
            value = value.float()
            feature = self.feature_pred(value)
            weights = self.weights_pred(value).sigmoid() * allowed  # B x N x h x w x Q
            sums = torch.einsum("bkhwq,bkhwc->bkqc", weights, feature)
            area = weights.flatten(2, 3).sum(2).unsqueeze(-1)
            return torch.cat([sums, area], dim=-1)
