"""SOC: semantic-assisted object clusters, on the ReferFormer trunk.

Changes to the trunk (``RobertLuo1/NeurIPS2023_SOC@76b2915:models/soc.py``; the ICCV'23
challenge copy ``soc_test/models/mttr.py`` is the same network with VOC named ``vita``):

- the decoder's content query is zeros; 20 queries; 3 + 3 transformer layers;
- mask features come from MTTR's FPN spatial decoder (:mod:`models.soc.spatial_decoder`,
  8 channels at stride 4) over the encoder memory and the stride-4 backbone map;
- VOC (:class:`models.common.vita.VideoQueryDecoder`, full attention over the clip) turns the
  frame queries into 20 video queries **initialised from the sentence feature**; that video
  query is added to every frame's decoder states, and the class, box and mask heads read the sum;
- two-way fusion: besides the vision-from-text fusion (``fusion``, multiplicative), the words
  attend to the clip (``text_from_video``, also multiplicative, on the stride-32 level with the
  visual positions as keys); its mean over the real words is the text feature of the
  text-video contrastive loss (training only; it changes no prediction).

Evaluation quirk kept from the official code: VOC runs on the last decoder layer in eval and the
heads' loop stops after level 0 (``zip`` with VOC's single layer): ``class_embed[0]``,
``bbox_embed[0]`` with the initial 2-D reference, the controller on layer 0's states (+ VOC),
and mask coordinates from layer 0's refined reference (computed without the VOC residual).

Layout: SOC's code is time-first (``t b``); with one clip per forward (its protocol) this equals
the family's ``b t`` layout, which this port uses throughout.
"""

from __future__ import annotations

from typing import Any

import torch

from models.common.deformable_transformer import DecoderOutput
from models.common.fusion import VisionLanguageFusion
from models.common.layers import clip_tokens
from models.common.vita import VideoQueryDecoder
from models.family.model import HeadInputs, ReferFormer, TextEmbedding, VideoFeatures
from models.family.video_queries import per_frame, video_queries_per_layer


class SOC(ReferFormer):
    """SOC: video-level object clustering initialised from the sentence.

    Args:
        video_decoder: VOC, a :class:`VideoQueryDecoder` without ``query_feat``.
        **kwargs: :class:`ReferFormer` arguments (``fusion_mode`` is "multiply").
    """

    def __init__(self, *, video_decoder: VideoQueryDecoder, **kwargs: Any) -> None:
        kwargs.setdefault("fusion_mode", "multiply")
        super().__init__(**kwargs)
        self.video_decoder = video_decoder
        self.text_from_video = VisionLanguageFusion(
            self.d_model, self.fusion.multihead_attn.num_heads, "multiply"
        )

    def decoder_content(self, video: VideoFeatures, text: TextEmbedding) -> torch.Tensor:
        return torch.zeros_like(text.sentence)

    def mask_features(
        self, video: VideoFeatures, memory_levels: list[torch.Tensor], text: TextEmbedding
    ) -> torch.Tensor:
        m8, m16, m32 = memory_levels
        return self.mask_decoder(m32, [m16, m8, video.backbone[0]])

    def head_inputs(
        self, decoded: DecoderOutput, video: VideoFeatures, text: TextEmbedding
    ) -> tuple[list[HeadInputs], torch.Tensor | None]:
        T = video.num_frames
        depth = len(decoded.hs)
        fed = list(range(depth)) if self.training else [depth - 1]
        queries = video_queries_per_layer(self.video_decoder, decoded.hs, fed, T, text.sentence)
        inputs = []
        for level in range(len(fed)):  # eval: level 0 only, plus the last layer's VOC output
            x = decoded.hs[level] + per_frame(queries[level], T)
            inputs.append(HeadInputs(level, x, x, x))
        return inputs, queries

    def text_feature(self, video: VideoFeatures, text: TextEmbedding) -> torch.Tensor:
        """E x d: the words after attending to the stride-32 level, averaged over real words."""
        T = video.num_frames
        visual = clip_tokens(video.projected[2], T).transpose(0, 1)  # (T h w) x E x d
        visual_pos = clip_tokens(video.pos[2], T).transpose(0, 1)
        m = video.masks[2]
        visual_pad = m.reshape(-1, T * m.shape[-2] * m.shape[-1])
        words = text.words.transpose(0, 1)
        attended = self.text_from_video.attend(words, visual, visual_pad, visual_pos)
        fused = (words * attended).transpose(0, 1)  # E x L x d
        keep = (~text.pad_mask).to(fused.dtype)[..., None]
        return (fused * keep).sum(1) / keep.sum(1).clamp(min=1)
