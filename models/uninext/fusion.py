"""GLIP's bi-directional image-text attention, UNINEXT's early fusion.

Parameter names follow MasterBin-IIAU/UNINEXT@5ab0386 ``models/deformable_detr/fuse_helper.py``
(``BiAttentionBlockForCheckpoint``: ``layer_norm_v``, ``layer_norm_l``, ``gamma_v``, ``gamma_l``,
``attn.{v_proj, l_proj, values_v_proj, values_l_proj, out_v_proj, out_l_proj}``), stored under
``detr.detr.transformer.encoder.vl_layers.{i}.b_attn``.

Quirks kept: both inputs are LayerNorm-ed and the residuals add to the *normalised* tensors;
logits are clamped to +-50000; padded text tokens get -9e15 in the text->image direction; in the
image->text direction the softmax runs over every image token (no visual padding mask), after
subtracting the row maximum.

Naming: N = batch, S = image tokens, L = text tokens, M = heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CLAMP = 50000.0


class BiMultiHeadAttention(nn.Module):
    """Cross attention in both directions between image tokens and text tokens."""

    def __init__(
        self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim**-0.5
        self.dropout = dropout
        self.v_proj = nn.Linear(v_dim, embed_dim)
        self.l_proj = nn.Linear(l_dim, embed_dim)
        self.values_v_proj = nn.Linear(v_dim, embed_dim)
        self.values_l_proj = nn.Linear(l_dim, embed_dim)
        self.out_v_proj = nn.Linear(embed_dim, v_dim)
        self.out_l_proj = nn.Linear(embed_dim, l_dim)
        for layer in (
            self.v_proj,
            self.l_proj,
            self.values_v_proj,
            self.values_l_proj,
            self.out_v_proj,
            self.out_l_proj,
        ):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        N, T, _ = x.shape
        return x.view(N, T, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self, v: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """v: N x S x Cv, lang: N x L x Cl, lang_mask: N x L (1 real, 0 pad) -> (dv, dl)."""
        N, S, _ = v.shape
        L = lang.shape[1]
        query = self._heads(self.v_proj(v) * self.scale)  # N x M x S x d
        key = self._heads(self.l_proj(lang))  # N x M x L x d
        value_v = self._heads(self.values_v_proj(v))
        value_l = self._heads(self.values_l_proj(lang))
        logits = (query @ key.transpose(-1, -2)).clamp(-_CLAMP, _CLAMP)  # N x M x S x L

        to_image = logits.transpose(-1, -2)
        to_image = (to_image - to_image.max(dim=-1, keepdim=True)[0]).clamp(-_CLAMP, _CLAMP)
        attn_l = to_image.softmax(dim=-1)  # N x M x L x S
        if lang_mask is not None:
            pad = (lang_mask == 0)[:, None, None, :]
            logits = logits.masked_fill(pad, -9e15)
        attn_v = logits.softmax(dim=-1)  # N x M x S x L

        attn_v = F.dropout(attn_v, p=self.dropout, training=self.training)
        attn_l = F.dropout(attn_l, p=self.dropout, training=self.training)
        out_v = (attn_v @ value_l).transpose(1, 2).reshape(N, S, -1)
        out_l = (attn_l @ value_v).transpose(1, 2).reshape(N, L, -1)
        return self.out_v_proj(out_v), self.out_l_proj(out_l)


class BiAttentionBlock(nn.Module):
    """Pre-norm bi-directional attention with layer scale on both residuals.

    Args:
        v_dim: image token channels (d_model).
        l_dim: text token channels (BERT hidden size).
        embed_dim: attention width (2048 upstream).
        num_heads: heads (8 upstream).
        init_scale: initial layer scale (1 / encoder layers upstream).
    """

    def __init__(
        self,
        v_dim: int,
        l_dim: int,
        embed_dim: int,
        num_heads: int,
        init_scale: float,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.layer_norm_v = nn.LayerNorm(v_dim)
        self.layer_norm_l = nn.LayerNorm(l_dim)
        self.attn = BiMultiHeadAttention(v_dim, l_dim, embed_dim, num_heads, dropout)
        self.gamma_v = nn.Parameter(torch.full((v_dim,), init_scale))
        self.gamma_l = nn.Parameter(torch.full((l_dim,), init_scale))

    def forward(
        self, v: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """N x S x Cv image tokens, N x L x Cl text tokens -> both updated."""
        v = self.layer_norm_v(v)
        lang = self.layer_norm_l(lang)
        delta_v, delta_l = self.attn(v, lang, lang_mask)
        return v + self.gamma_v * delta_v, lang + self.gamma_l * delta_l
