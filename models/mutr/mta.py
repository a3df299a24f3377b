"""MUTR's multi-scale temporal aggregation (MTA): the words gather the whole clip, level by level.

One ``MTALayer`` stack (``MTA.layers.*``, ``OpenGVLab/MUTR@c5f5044:models/segmentation.py``) is
applied in turn to each projected visual level (before the text fusion): the words are the queries
(with their 1-D position), the (t h w) tokens of the level are keys and values (no position).
The first token of the result replaces RoBERTa's pooled feature as MUTR's sentence feature.

Naming: B = clips, L = words, S = visual tokens of a level (T*h*w), C = channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MTALayer(nn.Module):
    """Words attend to one level's visual tokens, then an FFN; post-norm."""

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(
            d_model, nhead, dropout=dropout, batch_first=True
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        words: torch.Tensor,
        word_pos: torch.Tensor,
        visual: torch.Tensor,
        visual_pad_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """words, word_pos: B x L x C; visual: B x S x C; visual_pad_mask: B x S bool."""
        attended = self.multihead_attn(
            words + word_pos, visual, visual, key_padding_mask=visual_pad_mask, need_weights=False
        )[0]
        words = self.norm1(words + self.dropout(attended))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(words))))
        return self.norm2(words + self.dropout(ffn))


class MultiScaleTextAggregator(nn.Module):
    """The MTA: its layer stack applied to each visual level in order (coarse levels last).

    Args:
        d_model: channels.
        nhead: attention heads.
        dim_feedforward: FFN width.
        num_layers: layers in the stack (1 in every released MUTR).
    """

    def __init__(
        self, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 2048, num_layers: int = 1
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MTALayer(d_model, nhead, dim_feedforward) for _ in range(num_layers)
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self,
        words: torch.Tensor,
        word_pos: torch.Tensor,
        levels: Sequence[torch.Tensor],
        pad_masks: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Aggregate the levels into the words.

        Args:
            words, word_pos: B x L x C.
            levels: per level B x S_l x C visual tokens of the whole clip, (t h w) order.
            pad_masks: per level B x S_l bool (True on padding), or None.

        Returns:
            B x L x C aggregated words; ``[:, 0]`` is MUTR's sentence feature.
        """
        masks = list(pad_masks) if pad_masks is not None else [None] * len(levels)
        for visual, mask in zip(levels, masks, strict=True):
            for layer in self.layers:
                words = layer(words, word_pos, visual, mask)
        return words
