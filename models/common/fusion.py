"""Early vision-language fusion: visual tokens attend to the words of the expression.

One ``nn.MultiheadAttention`` (queries = visual tokens, keys = words + word position, values =
words, key padding mask from the tokenizer). The result either gates the visual tokens
(``mode="multiply"``: ``visual * attn``, SgMg / ReferFormer / SOC) or is added to them
(``mode="add"``: ``visual + attn``, MUTR). Parameter names ``multihead_attn.*`` are the
official ``fusion_module`` / ``vlf`` ones.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

FusionMode = Literal["multiply", "add"]


class VisionLanguageFusion(nn.Module):
    """Cross-attention from visual tokens to words, merged by product or sum.

    Args:
        d_model: channels.
        n_heads: attention heads.
        mode: ``"multiply"`` or ``"add"``.
        dropout: attention dropout (0 in the released models).
    """

    def __init__(
        self,
        d_model: int = 256,
        n_heads: int = 8,
        mode: FusionMode = "multiply",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if mode not in ("multiply", "add"):
            raise ValueError(f"fusion mode must be 'multiply' or 'add', got {mode!r}")
        self.mode = mode
        self.multihead_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)

    def attend(
        self,
        visual: torch.Tensor,
        words: torch.Tensor,
        word_pad_mask: torch.Tensor | None,
        word_pos: torch.Tensor | None,
        visual_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The attention output alone (Lv x B x C), before merging."""
        query = visual if visual_pos is None else visual + visual_pos
        key = words if word_pos is None else words + word_pos
        return self.multihead_attn(
            query=query, key=key, value=words, key_padding_mask=word_pad_mask, need_weights=False
        )[0]

    def forward(
        self,
        visual: torch.Tensor,
        words: torch.Tensor,
        word_pad_mask: torch.Tensor | None = None,
        word_pos: torch.Tensor | None = None,
        visual_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fuse.

        Args:
            visual: Lv x B x C visual tokens (e.g. (t h w) of one video per batch column).
            words: Lt x B x C word features.
            word_pad_mask: B x Lt bool, True on padding.
            word_pos: Lt x B x C word positions (added to the keys).
            visual_pos: Lv x B x C, added to the queries (None in the released models).

        Returns:
            Lv x B x C.
        """
        attn = self.attend(visual, words, word_pad_mask, word_pos, visual_pos)
        return visual * attn if self.mode == "multiply" else visual + attn
