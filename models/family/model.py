"""ReferFormer, written as the base of the ReferFormer / MUTR / SOC family.

The three models share one trunk (``wjn922/ReferFormer@06fc218:models/referformer.py``; MUTR's
``models/mutr.py`` and SOC's ``models/soc.py`` are edits of it):

1. :meth:`ReferFormer.encode_video` -- once per clip, for all of its expressions: Video Swin per
   frame, 2-D sine positions, input projections of strides 8/16/32 and the stride-64 level (a
   3x3 stride-2 conv on the raw stride-32 map).
2. :meth:`ReferFormer.encode_text` -- RoBERTa, the FeatureResizer on words and pooled sentence,
   the words' 1-D sine positions.
3. :meth:`ReferFormer.decode` -- per expression: early fusion of every level with the words
   (multiplicative here and in SOC, additive in MUTR), the deformable encoder, the decoder whose
   content query is given by :meth:`decoder_content` (the sentence here; MUTR: its MTA sentence;
   SOC: zeros), the mask features of :meth:`mask_features` (the cross-modal FPN here and in MUTR;
   SOC: the FPN spatial decoder), then the heads on the inputs :meth:`head_inputs` picks (here the
   decoder states of every layer; MUTR and SOC insert their video-level decoder and, in
   evaluation, keep only decoder layer 0 as their official code does).

Heads per decoder layer l: ``class_embed[l]`` logits, boxes ``sigmoid(bbox_embed[l](x) +
inverse_sigmoid(ref))`` with ref = the initial 2-D reference (on cx, cy only) for l = 0 and the
refined box of layer l-1 otherwise, and CondInst masks from ``controller(x)`` with relative
coordinates to the layer's refined reference point ``references[l][..., :2]`` in input pixels.

Layout: clips of T frames, frames of a clip consecutive (``b t``); N = B * T. One expression
per clip, or several expressions on one clip (the clip's features are shared).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from models.common.deformable_transformer import DecoderOutput, DeformableTransformer
from models.common.dynamic_mask_head import DynamicMaskHead
from models.common.fusion import FusionMode, VisionLanguageFusion
from models.common.layers import (
    MLP,
    build_input_projections,
    clip_maps,
    clip_tokens,
    inverse_sigmoid,
    resize_mask,
)
from models.common.position_encoding import sine_position_1d, sine_position_2d
from models.common.text_encoder import FeatureResizer, RobertaTextEncoder
from models.shared.swin import SwinBackbone
from models.shared.video_swin import VideoSwinBackbone


@dataclass(frozen=True)
class VideoFeatures:
    """Clips encoded once, shared by their expressions (text-independent).

    Attributes:
        backbone: per backbone level, stride 4 first: N x C_l x h_l x w_l.
        backbone_masks: N x h_l x w_l bool (True on padding) per backbone level.
        backbone_pos: N x d x h_l x w_l 2-D sine positions per backbone level.
        projected: per transformer level (strides 8, 16, 32, 64): N x d x h x w, before fusion.
        masks, pos: padding masks and positions of the transformer levels.
        image_sizes: B x 2 (H, W) of the unpadded network input of each clip (the relative
            coordinates of the mask head are in these pixels).
        num_frames: T.
    """

    backbone: list[torch.Tensor]
    backbone_masks: list[torch.Tensor]
    backbone_pos: list[torch.Tensor]
    projected: list[torch.Tensor]
    masks: list[torch.Tensor]
    pos: list[torch.Tensor]
    image_sizes: torch.Tensor
    num_frames: int

    @property
    def num_clips(self) -> int:
        return int(self.image_sizes.shape[0])

    def for_expressions(self, counts: Sequence[int]) -> VideoFeatures:
        """Each clip's features repeated for its ``counts[b]`` expressions (clip-major)."""
        if len(counts) != self.num_clips:
            raise ValueError(f"{len(counts)} expression counts for {self.num_clips} clips")
        if all(c == 1 for c in counts):
            return self
        T = self.num_frames
        clip = torch.repeat_interleave(
            torch.arange(self.num_clips, device=self.image_sizes.device),
            torch.as_tensor(counts, device=self.image_sizes.device),
        )
        frames = (clip[:, None] * T + torch.arange(T, device=clip.device)).reshape(-1)

        def pick(xs: list[torch.Tensor]) -> list[torch.Tensor]:
            return [x.index_select(0, frames) for x in xs]

        return replace(
            self,
            backbone=pick(self.backbone),
            backbone_masks=pick(self.backbone_masks),
            backbone_pos=pick(self.backbone_pos),
            projected=pick(self.projected),
            masks=pick(self.masks),
            pos=pick(self.pos),
            image_sizes=self.image_sizes.index_select(0, clip),
        )


@dataclass(frozen=True)
class TextEmbedding:
    """Encoded expressions at the transformer width.

    Attributes:
        words: E x L x d word features (resized RoBERTa states).
        sentence: E x d resized pooled feature.
        pad_mask: E x L bool, True on padding.
        pos: E x L x d 1-D sine positions of the words.
    """

    words: torch.Tensor
    sentence: torch.Tensor
    pad_mask: torch.Tensor
    pos: torch.Tensor


@dataclass(frozen=True)
class HeadInputs:
    """What the heads of one decoder layer read (each N x Q x d)."""

    layer: int
    class_input: torch.Tensor
    box_input: torch.Tensor
    mask_input: torch.Tensor


@dataclass
class RvosOutput:
    """Predictions of the head layers (evaluation: one; training: every decoder layer).

    Attributes:
        layers: decoder layer index of each entry.
        pred_logits: D x E x T x Q class logits (one class: the referred object).
        pred_boxes: D x E x T x Q x 4 normalised (cx, cy, w, h).
        pred_masks: D x E x T x Q x h x w mask logits at the mask stride.
        video_queries: D x E x Q x d video-level queries (MUTR, SOC), else None.
        text_feature: E x d text feature for SOC's text-video contrastive loss, else None.
        taps: intermediate tensors for parity debugging (filled when asked).
    """

    layers: list[int]
    pred_logits: torch.Tensor
    pred_boxes: torch.Tensor
    pred_masks: torch.Tensor
    video_queries: torch.Tensor | None = None
    text_feature: torch.Tensor | None = None
    taps: dict[str, torch.Tensor] = field(default_factory=dict)


class ReferFormer(nn.Module):
    """ReferFormer: language as queries for referring video object segmentation.

    Args:
        backbone: per-frame Video Swin or 2-D Swin (stage outputs at strides 4..32).
        text_encoder: RoBERTa (or a small RoBERTa for the tiny variants).
        transformer: the deformable transformer (its layer counts set the head count).
        mask_decoder: the pixel decoder producing the mask features at stride 4.
        d_model: transformer width.
        nheads: heads of the early fusion.
        num_queries: queries per frame.
        num_feature_levels: transformer levels (3 backbone levels + stride-2 extras; 4).
        mask_dim: channels of the mask features.
        dynamic_mask_channels: channels of the dynamic convs.
        controller_layers: dynamic conv layers.
        mask_stride: input pixels per mask-feature cell (4).
        fusion_mode: early fusion, ``"multiply"`` (ReferFormer, SOC) or ``"add"`` (MUTR).
        text_dropout: dropout of the FeatureResizer.
        input_proj_groups: GroupNorm groups of the input projections.
    """

    def __init__(
        self,
        *,
        backbone: VideoSwinBackbone | SwinBackbone,
        text_encoder: RobertaTextEncoder,
        transformer: DeformableTransformer,
        mask_decoder: nn.Module,
        d_model: int = 256,
        nheads: int = 8,
        num_queries: int = 5,
        num_feature_levels: int = 4,
        mask_dim: int = 256,
        dynamic_mask_channels: int = 8,
        controller_layers: int = 3,
        mask_stride: int = 4,
        fusion_mode: FusionMode = "multiply",
        text_dropout: float = 0.1,
        input_proj_groups: int = 32,
    ) -> None:
        super().__init__()
        if num_feature_levels != 4:
            raise ValueError("the family's released models use 4 feature levels")
        if len(backbone.out_channels) != 4:
            raise ValueError("the backbone must return its 4 stages (strides 4..32)")
        self.d_model = d_model
        self.num_queries = num_queries
        self.mask_stride = mask_stride
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.text_proj = FeatureResizer(text_encoder.hidden_size, d_model, text_dropout)
        self.input_proj = build_input_projections(
            backbone.out_channels[-3:],
            d_model,
            extra_levels=num_feature_levels - 3,
            groups=input_proj_groups,
        )
        self.fusion = VisionLanguageFusion(d_model, nheads, fusion_mode)
        self.transformer = transformer
        self.query_embed = nn.Embedding(num_queries, d_model)
        num_layers = transformer.num_decoder_layers
        self.class_embed = nn.ModuleList(nn.Linear(d_model, 1) for _ in range(num_layers))
        self.bbox_embed = nn.ModuleList(MLP(d_model, d_model, 4, 3) for _ in range(num_layers))
        self.mask_head = DynamicMaskHead(mask_dim, dynamic_mask_channels, controller_layers, 1)
        self.controller = MLP(d_model, d_model, self.mask_head.num_params, 3)
        self.mask_decoder = mask_decoder
        self._init_heads()

    def _init_heads(self) -> None:
        """Deformable DETR's head initialisation (focal prior, zero box deltas, wh bias -2)."""
        prior = -math.log((1 - 0.01) / 0.01)
        for head in self.class_embed:
            nn.init.constant_(head.bias, prior)
        for box in self.bbox_embed:
            nn.init.zeros_(box.layers[-1].weight)
            nn.init.zeros_(box.layers[-1].bias)
        nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
        for layer in self.controller.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    # ------------------------------------------------------------------ encoding
    def encode_video(
        self,
        frames: torch.Tensor,
        pad_mask: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
    ) -> VideoFeatures:
        """Encode clips (text-independent part).

        Args:
            frames: B x T x 3 x H x W normalised frames.
            pad_mask: B x T x H x W bool, True on padding (None: no padding).
            image_sizes: B x 2 (H, W) of the unpadded frames (default: H, W).
        """
        B, T, _, H, W = frames.shape
        full = (
            pad_mask.flatten(0, 1)
            if pad_mask is not None
            else torch.zeros(B * T, H, W, dtype=torch.bool, device=frames.device)
        )
        if image_sizes is None:
            image_sizes = torch.tensor([[H, W]] * B, device=frames.device)
        levels = self.backbone(frames)
        half = self.d_model // 2
        bmasks = [resize_mask(full, tuple(x.shape[-2:])) for x in levels]
        bpos = [sine_position_2d(m, half).to(frames.dtype) for m in bmasks]
        projected = [proj(x) for proj, x in zip(self.input_proj, levels[-3:], strict=False)]
        masks, pos = bmasks[-3:], bpos[-3:]
        extra = self.input_proj[3](levels[-1])
        extra_mask = resize_mask(full, tuple(extra.shape[-2:]))
        projected.append(extra)
        masks = [*masks, extra_mask]
        pos = [*pos, sine_position_2d(extra_mask, half).to(frames.dtype)]
        return VideoFeatures(levels, bmasks, bpos, projected, masks, pos, image_sizes, T)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextEmbedding:
        """E x L token ids and attention mask -> :class:`TextEmbedding`."""
        raw = self.text_encoder(input_ids, attention_mask)
        words = self.text_proj(raw.words)
        return TextEmbedding(
            words,
            self.text_proj(raw.sentence),
            raw.pad_mask,
            sine_position_1d(raw.pad_mask, self.d_model).to(words.dtype),
        )

    # ------------------------------------------------------------------ family hooks
    def decoder_content(self, video: VideoFeatures, text: TextEmbedding) -> torch.Tensor:
        """E x d content query of the decoder: ReferFormer repeats the sentence feature."""
        return text.sentence

    def mask_features(
        self, video: VideoFeatures, memory_levels: list[torch.Tensor], text: TextEmbedding
    ) -> torch.Tensor:
        """N x mask_dim x h4 x w4 from the stride-4 backbone map and the memory (8x..32x)."""
        return self.mask_decoder(
            [video.backbone[0], *memory_levels],
            video.backbone_pos,
            text.words,
            text.pos,
            num_frames=video.num_frames,
            pad_masks=video.backbone_masks,
            word_pad_mask=text.pad_mask,
        )

    def head_inputs(
        self, decoded: DecoderOutput, video: VideoFeatures, text: TextEmbedding
    ) -> tuple[list[HeadInputs], torch.Tensor | None]:
        """Which decoder layers get heads, on which features (and the video queries, if any).

        ReferFormer: every layer in training, the last one in evaluation, on its own states.
        """
        layers = range(len(decoded.hs)) if self.training else [len(decoded.hs) - 1]
        return [HeadInputs(i, decoded.hs[i], decoded.hs[i], decoded.hs[i]) for i in layers], None

    def text_feature(self, video: VideoFeatures, text: TextEmbedding) -> torch.Tensor | None:
        """A text feature for an auxiliary loss (SOC's two-way fusion); none here."""
        return None

    # ------------------------------------------------------------------ decoding
    def fuse(self, video: VideoFeatures, text: TextEmbedding) -> list[torch.Tensor]:
        """Early fusion of every transformer level with the words (each N x d x h x w)."""
        T = video.num_frames
        words = text.words.transpose(0, 1)
        word_pos = text.pos.transpose(0, 1)
        fused = []
        for x in video.projected:
            h, w = x.shape[-2:]
            visual = clip_tokens(x, T).transpose(0, 1)  # (T h w) x B x d
            out = self.fusion(visual, words, text.pad_mask, word_pos)
            fused.append(clip_maps(out.transpose(0, 1), T, h, w))
        return fused

    def decode(
        self,
        video: VideoFeatures,
        text: TextEmbedding,
        *,
        expression_counts: Sequence[int] | None = None,
        taps: bool = False,
    ) -> RvosOutput:
        """Segment the expressions on their clips.

        Args:
            video, text: the encoded clips and expressions (clip-major).
            expression_counts: expressions of each clip; default one per clip, or all of them
                on the single clip given.

        Returns:
            :class:`RvosOutput` (mask logits at stride ``mask_stride``).
        """
        E = text.words.shape[0]
        if expression_counts is None:
            expression_counts = [E] if video.num_clips == 1 else [1] * video.num_clips
        if sum(expression_counts) != E:
            raise ValueError(f"expression counts {list(expression_counts)} do not sum to {E}")
        video = video.for_expressions(expression_counts)
        T, Q = video.num_frames, self.num_queries
        N = E * T
        fused = self.fuse(video, text)
        content = self.decoder_content(video, text)  # E x d
        tgt = content[:, None, None].expand(E, T, Q, self.d_model).reshape(N, Q, self.d_model)
        query_pos = self.query_embed.weight[None].expand(N, Q, self.d_model)
        memory, decoded = self.transformer(
            fused, video.masks, video.pos, tgt, query_pos, self.bbox_embed
        )
        memory_levels = memory.levels()[:3]  # strides 8, 16, 32
        mask_features = self.mask_features(video, memory_levels, text)
        head_inputs, video_queries = self.head_inputs(decoded, video, text)
        scale = video.image_sizes.flip(-1).to(mask_features.dtype)  # E x 2 (W, H)
        scale = scale[:, None, None].expand(E, T, 1, 2).reshape(N, 1, 2)
        logits, boxes, masks = [], [], []
        for inputs in head_inputs:
            i = inputs.layer
            logits.append(self.class_embed[i](inputs.class_input)[..., 0])
            delta = self.bbox_embed[i](inputs.box_input)
            if i == 0:
                xy = delta[..., :2] + inverse_sigmoid(decoded.init_reference)
                boxes.append(torch.cat([xy, delta[..., 2:]], -1).sigmoid())
            else:
                boxes.append((delta + inverse_sigmoid(decoded.references[i - 1])).sigmoid())
            params = self.controller(inputs.mask_input)
            points = decoded.references[i][..., :2] * scale
            masks.append(self.mask_head(mask_features, params, points, self.mask_stride)[:, :, 0])
        h, w = mask_features.shape[-2:]
        out = RvosOutput(
            layers=[x.layer for x in head_inputs],
            pred_logits=torch.stack(logits).view(-1, E, T, Q),
            pred_boxes=torch.stack(boxes).view(-1, E, T, Q, 4),
            pred_masks=torch.stack(masks).view(-1, E, T, Q, h, w),
            video_queries=video_queries,
            text_feature=self.text_feature(video, text) if self.training else None,
        )
        if taps:
            out.taps.update(
                text_words=text.words,
                text_sentence=text.sentence,
                decoder_content=content,
                backbone_last=video.backbone[-1],
                fused_l2=fused[2],
                memory_l2=memory_levels[2],
                init_reference=decoded.init_reference,
                references=decoded.references,
                decoder_hs=decoded.hs,
                mask_features=mask_features,
            )
            if video_queries is not None:
                out.taps["video_queries"] = video_queries
        return out

    def forward(
        self,
        frames: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pad_mask: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        expression_counts: Sequence[int] | None = None,
    ) -> RvosOutput:
        """Training / one-shot entry: :meth:`encode_video`, :meth:`encode_text`, :meth:`decode`."""
        return self.decode(
            self.encode_video(frames, pad_mask, image_sizes),
            self.encode_text(input_ids, attention_mask),
            expression_counts=expression_counts,
        )
