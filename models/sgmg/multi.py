"""Multi-object SgMg (the paper's "Fast SgMg"): every expression of a video in one pass.

No code or checkpoint was released; this follows the author's description (bo-miao/SgMg issue
#14): "visual features extracted once; multi-instance fusion ``x_i = MHA(query = visual + pos,
key = text_i + pos_i, value = text_i, key_padding_mask = mask_i)``, then ``visual = visual *
sum_i x_i``; after multimodal encoding, features are decoupled per instance with
cross-attention".

So, per video: Video Swin, the input projections, the pre-fusion spectrum filters (as SgMg), then
**one** fusion whose gate is the sum of every expression's attention output, the post-fusion
spectrum filter and the deformable **encoder once** (the costly part, shared by all
expressions). Each expression then gets its own view of the memory by a second gated
cross-attention (``decouple``: ``memory * MHA(memory + pos, words_i, words_i)``) before the
per-expression decoder, CPK and MSO, which are SgMg's. Selection and refinement follow the
Ref-YouTube-VOS rule, per expression.

Training (:func:`models.sgmg.train.sgmg_loss`, which calls this class's ``decode``) uses clips
with several expressions of different objects, each matched and supervised as in SgMg; at test
time any number of expressions share the pass. Expressions are decoded in
chunks against the shared memory, so memory stays bounded for videos with many expressions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.common.deformable_transformer import EncoderMemory
from models.common.fusion import VisionLanguageFusion
from models.sgmg.model import ExpressionFeatures, SgMg, SgMgDecoded, Taps, VideoFeatures


def attend_each(
    mha: nn.MultiheadAttention,
    query: torch.Tensor,
    owners: torch.Tensor,
    words: torch.Tensor,
    word_pad_mask: torch.Tensor,
    word_pos: torch.Tensor,
) -> torch.Tensor:
    """Every expression's attention from its video's tokens, before the output projection.

    The same function as ``mha(query[:, owners], words + word_pos, words)`` without its
    ``out_proj``, but each video's query projection is computed once for all its expressions.

    Args:
        query: Lq x B x C tokens of B videos (positions already added).
        owners: E, the video of each expression.
        words, word_pos: Lt x E x C; word_pad_mask: E x Lt (True on padding).

    Returns:
        Lq x E x C.
    """
    C, H = mha.embed_dim, mha.num_heads
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    Lq, Lt, E = query.shape[0], words.shape[0], words.shape[1]
    q = F.linear(query, w_q, b_q).view(Lq, -1, H, C // H).permute(1, 2, 0, 3)  # B H Lq D
    k = F.linear(words + word_pos, w_k, b_k).view(Lt, E, H, C // H).permute(1, 2, 0, 3)
    v = F.linear(words, w_v, b_v).view(Lt, E, H, C // H).permute(1, 2, 0, 3)
    out = F.scaled_dot_product_attention(
        q[owners], k, v, attn_mask=~word_pad_mask[:, None, None, :]
    )  # E H Lq D
    return out.permute(2, 0, 1, 3).reshape(Lq, E, C)


class MultiObjectSgMg(SgMg):
    """SgMg with shared fusion and encoder for all expressions of a video (see module doc).

    Takes :class:`SgMg`'s arguments; adds ``decouple`` (gated cross-attention to each
    expression's words over the shared memory).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        heads = self.fusion_module.multihead_attn.num_heads
        self.decouple = VisionLanguageFusion(self.hidden_dim, heads, "multiply")

    def fuse_shared(
        self,
        video: VideoFeatures,
        text: ExpressionFeatures,
        owners: torch.Tensor,
        *,
        taps: Taps | None = None,
    ) -> list[torch.Tensor]:
        """Multi-instance fusion: each video's tokens gated by the sum over its expressions.

        Returns:
            4 levels (B T) x C x h x w, one column per video.
        """
        words = text.words.transpose(0, 1)
        word_pos = text.positions.transpose(0, 1)
        mha = self.fusion_module.multihead_attn
        counts = torch.bincount(owners, minlength=video.num_videos).to(words.dtype)
        fused_levels = []
        for i, x in enumerate(video.projected):
            tokens = self.video_tokens(x, video)  # (t h w) x B x C
            pos = self.video_tokens(video.positions[i], video)
            attn = attend_each(mha, tokens + pos, owners, words, text.pad_mask, word_pos)
            # sum_i out_proj(a_i) = W (sum_i a_i) + n b: one output projection per video
            summed = torch.zeros_like(tokens).index_add_(1, owners, attn)
            gate = F.linear(summed, mha.out_proj.weight) + counts[:, None] * mha.out_proj.bias
            fused = self.tokens_to_maps(tokens * gate, x.shape[-2:])
            post, coef = self.input_fft_post[i](fused, video.post_gauss[i])
            if taps is not None and i == 3:
                taps.update(scf3_fused=fused, scf3_post=post, scf3_coef_post=coef)
            fused_levels.append(post)
        return fused_levels

    def encode_shared(
        self,
        video: VideoFeatures,
        text: ExpressionFeatures,
        owners: torch.Tensor | None = None,
        *,
        taps: Taps | None = None,
    ) -> EncoderMemory:
        """Fusion of all expressions and the deformable encoder, once per video."""
        owners = self.owners(video, text) if owners is None else owners
        srcs = self.fuse_shared(video, text, owners, taps=taps)
        return self.transformer.encode(srcs, video.masks, video.positions)

    def decouple_memory(
        self,
        shared: EncoderMemory,
        video: VideoFeatures,
        text: ExpressionFeatures,
        owners: torch.Tensor,
    ) -> EncoderMemory:
        """Per-expression memory (E T) x S x C from the shared (B T) x S x C memory."""
        index = self.frame_index(owners, video.num_frames)
        T = video.num_frames
        pos = torch.cat([p.flatten(2).transpose(1, 2) for p in video.positions], 1)  # (B T) S C
        B = video.num_videos
        S, C = shared.memory.shape[1:]
        # each video's tokens, all frames: sequence (T S), batch B; projected once per video
        tokens = shared.memory.view(B, T * S, C).transpose(0, 1)
        query = tokens + pos.view(B, T * S, C).transpose(0, 1)
        mha = self.decouple.multihead_attn
        attn = attend_each(
            mha,
            query,
            owners,
            text.words.transpose(0, 1),
            text.pad_mask,
            text.positions.transpose(0, 1),
        )  # (T S) x E x C
        out = tokens[:, owners] * mha.out_proj(attn)  # the decoupling gate, per expression
        return EncoderMemory(
            out.transpose(0, 1).reshape(len(text) * T, S, C),
            shared.spatial_shapes,
            shared.padding_mask[index],
            shared.valid_ratios[index],
        )

    def decode(
        self,
        video: VideoFeatures,
        text: ExpressionFeatures,
        *,
        mask_layers: Sequence[int] | None = None,
        owners: torch.Tensor | None = None,
        taps: Taps | None = None,
        shared: EncoderMemory | None = None,
    ) -> SgMgDecoded:
        """As :meth:`SgMg.decode`, with the shared fusion/encoder (pass ``shared`` to reuse it
        for a chunk of the expressions it was computed with)."""
        owners = self.owners(video, text) if owners is None else owners
        if shared is None:
            shared = self.encode_shared(video, text, owners, taps=taps)
        memory = self.decouple_memory(shared, video, text, owners)
        return self.decode_memory(memory, video, text, owners, mask_layers=mask_layers)
