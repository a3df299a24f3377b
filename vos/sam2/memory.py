"""SAM 2's memory attention (4 pre-norm RoPE layers) and memory encoder.

Parameter names equal the checkpoint's ``memory_attention.*`` / ``memory_encoder.*`` keys
(facebookresearch/sam2@2b90b9f ``sam2/modeling/{memory_attention,memory_encoder}.py``,
``sam/transformer.py`` ``RoPEAttention``). Tokens are batch-first: B x N x C.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vos.sam2.heads import Attention
from vos.sam2.layers import LayerNorm2d
from vos.sam2.position import apply_rope, axial_rope, sine_position_map


class RoPEAttention(Attention):
    """Single-head attention with 2-D axial RoPE on queries and keys.

    The query grid is square (side sqrt(N), as upstream assumes); keys may stack several
    memory frames of that grid (``repeat_k``: the frequencies are tiled once per frame), and the
    last ``exclude`` keys (object-pointer tokens) are not rotated.
    """

    def __init__(self, dim: int = 256, kv_dim: int | None = None, repeat_k: bool = False) -> None:
        super().__init__(dim, num_heads=1, kv_dim=kv_dim)
        self.repeat_k = repeat_k
        self._freqs: torch.Tensor | None = None

    def _frequencies(self, n: int, head_dim: int, device: torch.device) -> torch.Tensor:
        if self._freqs is None or self._freqs.shape[0] != n or self._freqs.device != device:
            side = round(n**0.5)
            self._freqs = axial_rope(head_dim, side, side).to(device)
        return self._freqs

    def forward(  # type: ignore[override]
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, exclude: int = 0
    ) -> torch.Tensor:
        q, k, v = self.heads(self.q_proj(q)), self.heads(self.k_proj(k)), self.heads(self.v_proj(v))
        freqs = self._frequencies(q.shape[-2], q.shape[-1], q.device)
        q = apply_rope(q, freqs)
        rotated = k.shape[-2] - exclude
        repeat = rotated // q.shape[-2] if self.repeat_k else 1
        k = torch.cat([apply_rope(k[:, :, :rotated], freqs, repeat), k[:, :, rotated:]], dim=2)
        return self.merge(F.scaled_dot_product_attention(q, k, v))


@dataclass(frozen=True)
class MemoryBank:
    """One batch entry's memory for :meth:`MemoryAttention.forward_many`.

    Attributes:
        tokens: 1 x M x 64 memory tokens (spatial memories, then object-pointer tokens).
        pos: 1 x M x 64 their position encodings.
        num_ptr_tokens: how many of the last tokens are pointer tokens (not rotated).
    """

    tokens: torch.Tensor
    pos: torch.Tensor
    num_ptr_tokens: int

    @property
    def layout(self) -> tuple[int, int]:
        """(M, pointer tokens): entries of one layout attend to memory as one batch."""
        return int(self.tokens.shape[1]), self.num_ptr_tokens


def group_by_layout(banks: Sequence[MemoryBank]) -> list[list[int]]:
    """Indices of ``banks`` grouped by :attr:`MemoryBank.layout`, in first-seen order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, bank in enumerate(banks):
        groups.setdefault(bank.layout, []).append(i)
    return list(groups.values())


@dataclass(frozen=True)
class MemoryGroup:
    """Batch entries whose memories share a layout, stacked once for all layers.

    Attributes:
        rows: the entries' batch indices (G).
        tokens, pos: G x M x 64 their memory tokens and position encodings.
        num_ptr_tokens: pointer tokens at the end of each memory.
    """

    rows: list[int]
    tokens: torch.Tensor
    pos: torch.Tensor
    num_ptr_tokens: int

    @staticmethod
    def stack(banks: Sequence[MemoryBank]) -> list[MemoryGroup]:
        """``banks`` (one per batch entry) -> their groups (:func:`group_by_layout`)."""
        groups = []
        for rows in group_by_layout(banks):
            members = [banks[i] for i in rows]
            tokens = torch.cat([b.tokens for b in members]) if len(rows) > 1 else members[0].tokens
            pos = torch.cat([b.pos for b in members]) if len(rows) > 1 else members[0].pos
            groups.append(MemoryGroup(rows, tokens, pos, members[0].num_ptr_tokens))
        return groups


class MemoryAttentionLayer(nn.Module):
    """Self-attention, cross-attention to memory (memory PE on the keys only), ReLU FFN."""

    def __init__(self, dim: int = 256, mem_dim: int = 64, ffn_dim: int = 2048) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(dim)
        self.cross_attn_image = RoPEAttention(dim, kv_dim=mem_dim, repeat_k=True)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, exclude: int
    ) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y)
        y = self.norm2(x)
        x = x + self.cross_attn_image(y, memory + memory_pos, memory, exclude=exclude)
        y = self.norm3(x)
        return x + self.linear2(F.relu(self.linear1(y), inplace=True))

    def forward_many(
        self, x: torch.Tensor, groups: Sequence[MemoryGroup], *, shared_input: bool = False
    ) -> torch.Tensor:
        """:meth:`forward` for B entries with memories of different sizes: x B x HW x C (or
        1 x HW x C, the same for all, with ``shared_input``), ``groups`` covering the B entries
        -> B x HW x C. Self-attention and the FFN run on the whole batch (a shared input's
        self-attention once), the cross-attention once per group; every entry sees exactly the
        operations of :meth:`forward`."""
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y)
        if shared_input:
            x = x.expand(sum(len(g.rows) for g in groups), -1, -1)
        y = self.norm2(x)
        attended = y.new_empty(y.shape)
        for group in groups:
            rows = y[group.rows[0] : group.rows[0] + 1] if len(group.rows) == 1 else y[group.rows]
            keys = group.tokens + group.pos
            out = self.cross_attn_image(rows, keys, group.tokens, exclude=group.num_ptr_tokens)
            attended[group.rows] = out
        x = x + attended
        y = self.norm3(x)
        return x + self.linear2(F.relu(self.linear1(y), inplace=True))


class MemoryAttention(nn.Module):
    """Four :class:`MemoryAttentionLayer` and a final LayerNorm; the input gets 0.1 x its PE."""

    def __init__(self, dim: int = 256, mem_dim: int = 64, num_layers: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(dim, mem_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        current: torch.Tensor,
        current_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_ptr_tokens: int,
    ) -> torch.Tensor:
        """B x HW x C frame tokens and PE, B x M x 64 memory and PE (the last
        ``num_ptr_tokens`` are object-pointer tokens) -> B x HW x C."""
        x = current + 0.1 * current_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_ptr_tokens)
        return self.norm(x)

    def forward_many(
        self, current: torch.Tensor, current_pos: torch.Tensor, banks: Sequence[MemoryBank]
    ) -> torch.Tensor:
        """One frame's 1 x HW x C tokens and PE conditioned on B memories (one per object or
        track, of any sizes) -> B x HW x C, entry ``i`` equal to :meth:`forward` on bank ``i``.

        The first layer's self-attention sees the same input for every entry and runs once;
        the cross-attention runs once per memory layout (:func:`group_by_layout`)."""
        if not banks:
            raise ValueError("forward_many needs at least one memory bank")
        groups = MemoryGroup.stack(banks)
        x = current + 0.1 * current_pos
        for i, layer in enumerate(self.layers):
            x = layer.forward_many(x, groups, shared_input=i == 0)
        return self.norm(x)


class MaskDownSampler(nn.Module):
    """Four conv(3, stride 2) + LayerNorm2d + GELU steps (1 -> 4 -> 16 -> 64 -> 256 channels,
    total stride 16), then a 1 x 1 conv to 256 (``encoder.0`` ... ``encoder.12``)."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(4):
            layers += [
                nn.Conv2d(channels, channels * 4, kernel_size=3, stride=2, padding=1),
                LayerNorm2d(channels * 4),
                nn.GELU(),
            ]
            channels *= 4
        layers.append(nn.Conv2d(channels, dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7 x 7, LayerNorm2d, 4x MLP with GELU, layer scale ``gamma``."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """Two :class:`CXBlock` (``layers.0`` / ``layers.1``)."""

    def __init__(self, dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Image features + a mask (already sigmoid-scaled) -> 64-d memory features and their PE."""

    def __init__(self, dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(dim)
        self.pix_feat_proj = nn.Conv2d(dim, dim, kernel_size=1)
        self.fuser = Fuser(dim)
        self.out_proj = nn.Conv2d(dim, out_dim, kernel_size=1)

    def forward(
        self, pix_feat: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """B x 256 x h x w, B x 1 x 16h x 16w -> (B x 64 x h x w, 1 x 64 x h x w)."""
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask)
        x = self.out_proj(self.fuser(x))
        return x, sine_position_map(x.shape[1], x.shape[-2], x.shape[-1], x.device).to(x.dtype)
