"""SgMg: Spectrum-guided Multi-granularity referring video object segmentation (ICCV 2023).

A port of ``bo-miao/SgMg`` ``models/sgmg.py`` (code commit 728333c) split into stages, so that
a video is encoded once for all of its expressions:

1. :meth:`SgMg.encode_video` (text-free): Video Swin per-frame features; the last three levels
   and a stride-64 level (3x3 stride-2 conv of the raw stride-32 features) projected to 256
   channels and filtered by the pre-fusion spectrum modulators; padding masks, 2-D sine
   positions and the Gaussian maps of every spectrum call.
2. :meth:`SgMg.encode_text`: RoBERTa, projected words and sentence, 1-D word positions.
3. :meth:`SgMg.decode` (per expression, batched as columns): Spectrum-guided Cross-modal Fusion
   (visual tokens * attention to the words, then the post-fusion spectrum modulator), the
   deformable transformer (sentence feature as content query, box refinement), class and box
   heads per decoder layer, and the Conditional Patch Kernels: a controller predicts two dynamic
   1x1 convs per (frame, query) that turn the summed encoder memories at 1/8 plus pixel-unit
   relative coordinates into 16 channels = a 4 x 4 patch of mask logits per cell.
4. :meth:`SgMg.refine`: the Multi-granularity Segmentation Optimizer on one query's patch logits
   with the raw backbone features at 1/8 and 1/4, then ``pixel_shuffle(4)`` to full resolution.

The Ref-YouTube-VOS query selection (frame-averaged sigmoid score, before refinement) lives in
:mod:`models.sgmg.inference`; training (matching before refinement) in :mod:`models.sgmg.train`.

Naming: columns = expressions decoded together (or clips in a training batch), T = frames per
column, N = columns x T (column-major), Q = queries, D = decoder layers, C = hidden channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.common.deformable_transformer import DeformableTransformer, EncoderMemory
from models.common.dynamic_mask_head import DynamicMaskHead
from models.common.fusion import VisionLanguageFusion
from models.common.layers import MLP, build_input_projections, inverse_sigmoid, resize_mask
from models.common.position_encoding import sine_position_1d, sine_position_2d
from models.common.text_encoder import FeatureResizer, RobertaTextEncoder
from models.sgmg.refiner import MultiGranularityRefiner
from models.sgmg.spectrum import SpectrumModulator, gaussian_chain
from models.shared.video_swin import VideoSwinBackbone

PATCH = 4  # CPK: 16 channels = a 4 x 4 patch per 1/8 cell (hard-coded in the official code)
MASK_STRIDE = 8
SIZE_DIVISIBILITY = 16  # inference padding (training batches pad to 32)

Taps = dict[str, torch.Tensor]  # debugging outputs by name (the parity cases' taps)


@dataclass(frozen=True)
class VideoFeatures:
    """Text-free features of B videos of T frames (N = B x T, video-major).

    Attributes:
        backbone: Video Swin levels (strides 4, 8, 16, 32), each N x C_l x h_l x w_l.
        projected: 4 levels (strides 8..64) after ``input_proj`` and the pre-fusion spectrum
            modulator, each N x C x h x w float32.
        masks: 4 padding masks N x h x w (True on padding).
        positions: 4 sine positions N x C x h x w.
        post_gauss: the Gaussian map of each post-fusion spectrum call, 1 x 1 x h x w.
        image_sizes: N x 2 (h, w) unpadded input size of each frame.
        num_videos: B.
    """

    backbone: list[torch.Tensor]
    projected: list[torch.Tensor]
    masks: list[torch.Tensor]
    positions: list[torch.Tensor]
    post_gauss: list[torch.Tensor]
    image_sizes: torch.Tensor
    num_videos: int

    @property
    def num_frames(self) -> int:
        return self.image_sizes.shape[0] // self.num_videos

    def frames(self, start: int, end: int) -> VideoFeatures:
        """Frames [start, end) of a single video (B = 1): frames are independent past here."""
        if self.num_videos != 1:
            raise ValueError("frame slicing needs a single video")

        def cut(xs: list[torch.Tensor]) -> list[torch.Tensor]:
            return [x[start:end] for x in xs]

        return replace(
            self,
            backbone=cut(self.backbone),
            projected=cut(self.projected),
            masks=cut(self.masks),
            positions=cut(self.positions),
            image_sizes=self.image_sizes[start:end],
        )


@dataclass(frozen=True)
class ExpressionFeatures:
    """E encoded expressions.

    Attributes:
        words: E x L x C projected word features.
        sentence: E x C projected sentence feature (the decoder's content query).
        pad_mask: E x L bool, True on padding.
        positions: E x L x C 1-D sine positions of the words.
    """

    words: torch.Tensor
    sentence: torch.Tensor
    pad_mask: torch.Tensor
    positions: torch.Tensor

    def __len__(self) -> int:
        return int(self.words.shape[0])

    def select(self, index: torch.Tensor | slice) -> ExpressionFeatures:
        return ExpressionFeatures(
            self.words[index], self.sentence[index], self.pad_mask[index], self.positions[index]
        )


@dataclass(frozen=True)
class SgMgDecoded:
    """Per decoder layer outputs for N = columns x T frames.

    Attributes:
        logits: D x N x Q class logits (one class).
        boxes: D x N x Q x 4 boxes (cx, cy, w, h) in [0, 1] of the unpadded frame.
        references: D x N x Q x 4 refined reference boxes (detached).
        init_reference: N x Q x 2.
        hs: D x N x Q x C decoder outputs.
        patch_logits: decoder layer -> N x Q x 16 x h8 x w8 CPK logits (layers asked for).
        columns: columns decoded.
    """

    logits: torch.Tensor
    boxes: torch.Tensor
    references: torch.Tensor
    init_reference: torch.Tensor
    hs: torch.Tensor
    patch_logits: dict[int, torch.Tensor]
    columns: int


class SgMg(nn.Module):
    """The SgMg network (built sub-modules in, explicit hyper-parameters).

    Args:
        backbone: a :class:`VideoSwinBackbone` with 4 levels.
        text_encoder: a :class:`RobertaTextEncoder`.
        hidden_dim: transformer width (256).
        num_queries: queries per frame (5).
        num_heads: attention heads of the transformer and the fusion (8).
        enc_layers, dec_layers: 4 / 4.
        dim_feedforward: 2048.
        dropout: transformer and text-projection dropout (0.1).
        enc_n_points, dec_n_points: 4 / 4.
        dynamic_mask_channels: channels of the CPK hidden dynamic layer (16).
        controller_layers: dynamic layers (2).
        scf_sigma: the spectrum Gaussian's sigma (7).
        norm_groups: GroupNorm groups of the input projections (32).
    """

    num_feature_levels = 4

    def __init__(
        self,
        *,
        backbone: VideoSwinBackbone,
        text_encoder: RobertaTextEncoder,
        hidden_dim: int = 256,
        num_queries: int = 5,
        num_heads: int = 8,
        enc_layers: int = 4,
        dec_layers: int = 4,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        enc_n_points: int = 4,
        dec_n_points: int = 4,
        dynamic_mask_channels: int = 16,
        controller_layers: int = 2,
        scf_sigma: float = 7.0,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        if len(backbone.out_channels) != 4:
            raise ValueError("SgMg needs a backbone with 4 levels (strides 4, 8, 16, 32)")
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.scf_sigma = scf_sigma
        self.backbone = backbone
        self.text_encoder = text_encoder
        width = text_encoder.hidden_size
        self.text_proj = FeatureResizer(width, hidden_dim, dropout)
        self.sentence_proj = FeatureResizer(width, hidden_dim, dropout)
        self.fusion_module = VisionLanguageFusion(hidden_dim, num_heads, "multiply")
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = build_input_projections(
            backbone.out_channels[-3:], hidden_dim, extra_levels=1, groups=norm_groups
        )
        self.input_fft = nn.ModuleList(SpectrumModulator(hidden_dim) for _ in range(4))
        self.input_fft_post = nn.ModuleList(SpectrumModulator(hidden_dim) for _ in range(4))
        self.transformer = DeformableTransformer(
            d_model=hidden_dim,
            n_heads=num_heads,
            num_encoder_layers=enc_layers,
            num_decoder_layers=dec_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            num_feature_levels=self.num_feature_levels,
            enc_n_points=enc_n_points,
            dec_n_points=dec_n_points,
        )
        self.class_embed = nn.ModuleList(nn.Linear(hidden_dim, 1) for _ in range(dec_layers))
        self.bbox_embed = nn.ModuleList(
            MLP(hidden_dim, hidden_dim, 4, 3) for _ in range(dec_layers)
        )
        self.mask_head = DynamicMaskHead(
            hidden_dim, dynamic_mask_channels, controller_layers, PATCH * PATCH
        )
        self.controller = MLP(hidden_dim, hidden_dim, self.mask_head.num_params, 3)
        self.mask_refine = MultiGranularityRefiner(
            PATCH * PATCH, (backbone.out_channels[0], backbone.out_channels[1])
        )
        self._init_heads()

    def _init_heads(self) -> None:
        bias = -math.log((1 - 0.01) / 0.01)
        for head in self.class_embed:
            nn.init.constant_(head.bias, bias)
        for box in self.bbox_embed:
            nn.init.constant_(box.layers[-1].weight, 0)
            nn.init.constant_(box.layers[-1].bias, 0)
        nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
        for layer in self.controller.layers:
            nn.init.zeros_(layer.bias)
            nn.init.xavier_uniform_(layer.weight)

    @property
    def num_decoder_layers(self) -> int:
        return len(self.class_embed)

    # ----------------------------------------------------------------------------- stages

    def encode_video(
        self, frames: torch.Tensor, image_sizes: torch.Tensor, *, taps: Taps | None = None
    ) -> VideoFeatures:
        """Text-free features.

        Args:
            frames: B x T x 3 x Hp x Wp normalised frames, zero-padded at the bottom/right
                (:func:`pad_video`); Hp, Wp >= 144 and multiples of 16 (32 while training).
            image_sizes: B x 2 int (h, w) unpadded size of each video.
        """
        B, T = frames.shape[:2]
        Hp, Wp = frames.shape[-2:]
        sizes = image_sizes.to(frames.device).long().repeat_interleave(T, dim=0)  # N x 2
        ys = torch.arange(Hp, device=frames.device)
        xs = torch.arange(Wp, device=frames.device)
        full_mask = (ys[None, :, None] >= sizes[:, 0, None, None]) | (
            xs[None, None, :] >= sizes[:, 1, None, None]
        )
        feats = self.backbone(frames)
        levels = [self.input_proj[i](feats[i + 1]) for i in range(3)]
        levels.append(self.input_proj[3](feats[3]))
        shapes = [tuple(x.shape[-2:]) for x in levels]
        # the spectrum calls in order: L0 pre, L0 post, L1 pre, ... L3 post
        chain = gaussian_chain([s for s in shapes for _ in (0, 1)], self.scf_sigma, frames.device)
        projected, masks, positions, coefs = [], [], [], []
        for i, x in enumerate(levels):
            y, coef = self.input_fft[i](x, chain[2 * i])
            projected.append(y)
            coefs.append(coef)
            mask = resize_mask(full_mask, shapes[i])
            masks.append(mask)
            positions.append(sine_position_2d(mask, self.hidden_dim // 2).to(y.dtype))
        if taps is not None:
            taps.update(scf3_pre=projected[3], scf3_gauss=chain[6][0, 0], scf3_coef_pre=coefs[3])
        return VideoFeatures(
            backbone=feats,
            projected=projected,
            masks=masks,
            positions=positions,
            post_gauss=[chain[2 * i + 1] for i in range(4)],
            image_sizes=sizes,
            num_videos=B,
        )

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, taps: Taps | None = None
    ) -> ExpressionFeatures:
        """Args: input_ids, attention_mask: E x L (RoBERTa ids, 1 on real tokens)."""
        raw = self.text_encoder(input_ids, attention_mask)
        words = self.text_proj(raw.words)
        sentence = self.sentence_proj(raw.sentence)
        if taps is not None:
            taps.update(
                text_word_raw=raw.words,
                text_sentence_raw=raw.sentence,
                text_word_features=words,
                text_sentence_features=sentence,
            )
        positions = sine_position_1d(raw.pad_mask, self.hidden_dim).to(words.dtype)
        return ExpressionFeatures(words, sentence, raw.pad_mask, positions)

    def fuse(
        self,
        video: VideoFeatures,
        text: ExpressionFeatures,
        *,
        owners: torch.Tensor | None = None,
        taps: Taps | None = None,
    ) -> list[torch.Tensor]:
        """Spectrum-guided Cross-modal Fusion of every level, one column per expression.

        Args:
            owners: E, the video of each expression (default: all of a single video, or
                expression i of video i).

        Returns:
            4 levels N x C x h x w with N = E x T.
        """
        owners = self.owners(video, text) if owners is None else owners
        words = text.words.transpose(0, 1)  # L x E x C
        word_pos = text.positions.transpose(0, 1)
        fused_levels = []
        for i, x in enumerate(video.projected):
            tokens = self.video_tokens(x, video)[:, owners]  # (t h w) x E x C
            fused = self.fusion_module(tokens, words, text.pad_mask, word_pos)
            fused = self.tokens_to_maps(fused, x.shape[-2:])
            post, coef = self.input_fft_post[i](fused, video.post_gauss[i])
            if taps is not None and i == 3:
                taps.update(scf3_fused=fused, scf3_post=post, scf3_coef_post=coef)
            fused_levels.append(post)
        return fused_levels

    @staticmethod
    def video_tokens(x: torch.Tensor, video: VideoFeatures) -> torch.Tensor:
        """(B T) x C x h x w -> (T h w) x B x C (the fusion's sequence layout)."""
        _, C, h, w = x.shape
        T = video.num_frames
        return x.view(video.num_videos, T, C, h, w).permute(1, 3, 4, 0, 2).flatten(0, 2)

    @staticmethod
    def tokens_to_maps(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(T h w) x E x C -> (E T) x C x h x w."""
        h, w = size
        L, E, C = tokens.shape
        T = L // (h * w)
        return tokens.view(T, h, w, E, C).permute(3, 0, 4, 1, 2).reshape(E * T, C, h, w)

    @staticmethod
    def owners(video: VideoFeatures, text: ExpressionFeatures) -> torch.Tensor:
        """The default video of each expression: all of one video, or one expression each."""
        E, B = len(text), video.num_videos
        device = text.words.device
        if B == E:
            return torch.arange(E, device=device)
        if B == 1:
            return torch.zeros(E, dtype=torch.long, device=device)
        raise ValueError(f"{B} videos cannot pair with {E} expressions without owners")

    @staticmethod
    def frame_index(owners: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(E T) indices into the video frames for expression-major columns."""
        steps = torch.arange(num_frames, device=owners.device)
        return (owners[:, None] * num_frames + steps).flatten()

    def decode(
        self,
        video: VideoFeatures,
        text: ExpressionFeatures,
        *,
        mask_layers: Sequence[int] | None = None,
        owners: torch.Tensor | None = None,
        taps: Taps | None = None,
    ) -> SgMgDecoded:
        """Fusion, transformer, heads and CPK patch logits.

        Args:
            video: features of 1 video (broadcast to every expression) or of several videos.
            text: E expressions.
            mask_layers: decoder layers whose CPK logits to compute (default: the last).
            owners: E, the video of each expression (see :meth:`owners`).
        """
        owners = self.owners(video, text) if owners is None else owners
        srcs = self.fuse(video, text, owners=owners, taps=taps)
        index = self.frame_index(owners, video.num_frames)
        masks = [m[index] for m in video.masks]
        memory = self.transformer.encode(srcs, masks, [p[index] for p in video.positions])
        return self.decode_memory(memory, video, text, owners, mask_layers=mask_layers)

    def decode_memory(
        self,
        memory: EncoderMemory,
        video: VideoFeatures,
        text: ExpressionFeatures,
        owners: torch.Tensor,
        *,
        mask_layers: Sequence[int] | None = None,
    ) -> SgMgDecoded:
        """The decoder, heads and CPK on encoded (per-expression) memory of E x T frames."""
        columns = len(text)
        T = video.num_frames
        N = columns * T
        sizes = video.image_sizes[self.frame_index(owners, T)]
        Q = self.num_queries
        tgt = text.sentence[:, None, None].expand(columns, T, Q, -1).reshape(N, Q, -1)
        query_pos = self.query_embed.weight[None].expand(N, -1, -1)
        out = self.transformer.decode(memory, tgt, query_pos, self.bbox_embed)
        logits, boxes = [], []
        for level in range(self.num_decoder_layers):
            logits.append(self.class_embed[level](out.hs[level])[..., 0])
            delta = self.bbox_embed[level](out.hs[level])
            if level == 0:
                xy = delta[..., :2] + inverse_sigmoid(out.init_reference)
                boxes.append(torch.cat([xy, delta[..., 2:]], -1).sigmoid())
            else:
                boxes.append((delta + inverse_sigmoid(out.references[level - 1])).sigmoid())
        levels = memory.levels()
        target = levels[0].shape[-2:]
        mask_features = levels[0] + sum(
            F.interpolate(x, size=target, mode="bicubic", align_corners=False) for x in levels[1:3]
        )
        if mask_layers is None:
            mask_layers = [self.num_decoder_layers - 1]
        scale = sizes.flip(-1).to(mask_features.dtype)[:, None]  # N x 1 x 2 (w, h)
        patch_logits = {}
        for level in mask_layers:
            params = self.controller(out.hs[level])
            points = out.references[level][..., :2] * scale
            patch_logits[level] = self.mask_head(mask_features, params, points, MASK_STRIDE)
        return SgMgDecoded(
            logits=torch.stack(logits),
            boxes=torch.stack(boxes),
            references=out.references,
            init_reference=out.init_reference,
            hs=out.hs,
            patch_logits=patch_logits,
            columns=columns,
        )

    def refine(
        self, patch_logits: torch.Tensor, features_4: torch.Tensor, features_8: torch.Tensor
    ) -> torch.Tensor:
        """MSO + pixel shuffle: N x 16 x h8 x w8 -> N x Hp x Wp full-resolution logits.

        ``features_4`` / ``features_8`` are the backbone levels 0 and 1 of the same N frames.
        """
        refined = self.mask_refine(patch_logits, features_4, features_8)
        return F.pixel_shuffle(refined, PATCH)[:, 0]

    @staticmethod
    def patch_to_low_res(patch_logits: torch.Tensor) -> torch.Tensor:
        """... x 16 x h8 x w8 CPK logits -> ... x (4 h8) x (4 w8) patch masks at 1/2."""
        c, h, w = patch_logits.shape[-3:]
        low = F.pixel_shuffle(patch_logits.reshape(-1, c, h, w), PATCH)
        return low.reshape(*patch_logits.shape[:-3], h * PATCH, w * PATCH)


def pad_video(frames: torch.Tensor, divisor: int = SIZE_DIVISIBILITY) -> torch.Tensor:
    """Zero-pad ... x H x W at the bottom/right to multiples of ``divisor``."""
    H, W = frames.shape[-2:]
    return F.pad(frames, (0, -W % divisor, 0, -H % divisor))
