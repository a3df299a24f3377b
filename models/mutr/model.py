"""MUTR: ReferFormer with additive early fusion, MTA (words gather the clip) and MTI (VITA).

Changes to the ReferFormer trunk (``OpenGVLab/MUTR@c5f5044:models/mutr.py``):

- early fusion adds the attention output to the visual tokens instead of multiplying;
- the decoder's content query is the first token of the MTA-aggregated words
  (:class:`models.mutr.mta.MultiScaleTextAggregator` over the projected levels before fusion);
  the RoBERTa pooler is computed but unused, and fusion and FPN read the original words;
- MTI (:class:`models.common.vita.VideoQueryDecoder`, window 4, learned ``query_feat``) turns
  the per-frame decoder states into video queries that drive the class and mask heads; the box
  head keeps reading the per-frame states.

Evaluation quirk kept from the official code: MTI returns one layer in eval (fed with the last
decoder layer), so only level 0 of the head loop runs: ``class_embed[0]`` and ``controller`` on
the MTI output (the same in every frame), ``bbox_embed[0]`` on the **first** decoder layer's
states with the initial 2-D reference, and mask coordinates from the first layer's refined
reference. In training every decoder layer gets its own MTI pass and heads.
"""

from __future__ import annotations

from typing import Any

import torch

from models.common.deformable_transformer import DecoderOutput
from models.common.layers import clip_tokens
from models.common.vita import VideoQueryDecoder
from models.family.model import HeadInputs, ReferFormer, TextEmbedding, VideoFeatures
from models.family.video_queries import per_frame, video_queries_per_layer
from models.mutr.mta import MultiScaleTextAggregator


class MUTR(ReferFormer):
    """MUTR: a unified temporal transformer for referring video object segmentation.

    Args:
        mta: the multi-scale temporal aggregation.
        video_decoder: MTI, a :class:`VideoQueryDecoder` with a learned ``query_feat``.
        **kwargs: :class:`ReferFormer` arguments (``fusion_mode`` is "add").
    """

    def __init__(
        self, *, mta: MultiScaleTextAggregator, video_decoder: VideoQueryDecoder, **kwargs: Any
    ) -> None:
        kwargs.setdefault("fusion_mode", "add")
        super().__init__(**kwargs)
        self.mta = mta
        self.video_decoder = video_decoder

    def decoder_content(self, video: VideoFeatures, text: TextEmbedding) -> torch.Tensor:
        """The first MTA-aggregated word: MUTR's sentence feature (E x d)."""
        T = video.num_frames
        levels = [clip_tokens(x, T) for x in video.projected]
        masks = [m.reshape(-1, T * m.shape[-2] * m.shape[-1]) for m in video.masks]
        return self.mta(text.words, text.pos, levels, masks)[:, 0]

    def head_inputs(
        self, decoded: DecoderOutput, video: VideoFeatures, text: TextEmbedding
    ) -> tuple[list[HeadInputs], torch.Tensor | None]:
        T = video.num_frames
        depth = len(decoded.hs)
        fed = list(range(depth)) if self.training else [depth - 1]
        queries = video_queries_per_layer(self.video_decoder, decoded.hs, fed, T)
        inputs = []
        for level in range(len(fed)):  # eval: level 0 only, with the last layer's MTI output
            shared = per_frame(queries[level], T)
            inputs.append(HeadInputs(level, shared, decoded.hs[level], shared))
        return inputs, queries
