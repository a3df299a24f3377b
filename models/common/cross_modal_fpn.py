"""ReferFormer's cross-modal FPN pixel decoder (used unchanged by MUTR).

Top-down over four levels, 32x -> 4x: the 8x/16x/32x levels read the deformable **encoder
memory**, the 4x level the raw backbone stage-1 map. Each level is a lateral 1x1 conv + GN, a
:class:`VisionLanguageBlock` (self-attention over the tokens of the whole clip, spatially reduced
by ``sr_ratio``, then cross-attention to the words, then an FFN), then
``y = layer(x + nearest_upsample(y))`` (3x3 conv + GN + ReLU; the top level has no sum). A last
3x3 conv gives the mask features at stride 4.

Sub-module names follow the checkpoints (``wjn922/ReferFormer@06fc218:models/segmentation.py``
``CrossModalFPNDecoder``; ``OpenGVLab/MUTR@c5f5044:models/segmentation.py`` is the same):
``adapter_1..4`` / ``layer_1..4`` / ``cross_attn_1..4`` (index 1 = stride 4), ``mask_features``.

Naming: B = clips, T = frames, N = B*T, L = words, C = channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.common.layers import clip_maps, clip_tokens


class ConvNorm(nn.Conv2d):
    """A conv with an optional norm and activation after it (detectron2's ``Conv2d`` layout:
    the norm is a child named ``norm``, so its keys read ``<conv>.norm.weight``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        norm: nn.Module | None = None,
        relu: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias
        )
        self.norm = norm
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


class VisionLanguageBlock(nn.Module):
    """Clip-wide, spatially reduced self-attention, then word cross-attention, then FFN (post-norm).

    Args:
        d_model: channels.
        nhead: attention heads.
        dim_feedforward: FFN width.
        dropout: dropout (inactive in eval).
        sr_ratio: queries, keys and values are shrunk by nearest interpolation to
            ``(int(h / sr), int(w / sr))`` for the self-attention, whose output is resized back
            bilinearly (``align_corners=False``).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        sr_ratio: int = 1,
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(
            d_model, nhead, dropout=dropout, batch_first=True
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.sr_ratio = sr_ratio

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        words: torch.Tensor,
        word_pos: torch.Tensor,
        *,
        num_frames: int,
        pad_mask: torch.Tensor | None = None,
        word_pad_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fuse one level.

        Args:
            x, pos: N x C x h x w visual features and their position embedding.
            words, word_pos: B x L x C word features and their 1-D position embedding.
            num_frames: T (frames of a clip attend to each other).
            pad_mask: N x h x w bool, True on padded pixels.
            word_pad_mask: B x L bool, True on padded words.

        Returns:
            N x C x h x w.
        """
        N, _, h, w = x.shape
        T = num_frames
        qk = x + pos
        value = x
        key_pad = pad_mask
        sh, sw = h, w
        if self.sr_ratio > 1:
            sh, sw = int(h / self.sr_ratio), int(w / self.sr_ratio)
            qk = F.interpolate(qk, size=(sh, sw), mode="nearest")
            value = F.interpolate(value, size=(sh, sw), mode="nearest")
            if key_pad is not None:
                key_pad = F.interpolate(key_pad[None].float(), size=(sh, sw), mode="nearest")[0]
                key_pad = key_pad.bool()
        if key_pad is not None:
            key_pad = key_pad.reshape(N // T, T * sh * sw)
        qk_tokens = clip_tokens(qk, T)
        attended = self.self_attn(
            qk_tokens,
            qk_tokens,
            clip_tokens(value, T),
            key_padding_mask=key_pad,
            need_weights=False,
        )[0]
        attended = clip_maps(attended, T, sh, sw)
        if self.sr_ratio > 1:
            attended = F.interpolate(attended, size=(h, w), mode="bilinear", align_corners=False)
        tgt = self.norm1(clip_tokens(x, T) + self.dropout(clip_tokens(attended, T)))
        pos_tokens = clip_tokens(pos, T)
        attended = self.multihead_attn(
            tgt + pos_tokens,
            words + word_pos,
            words,
            key_padding_mask=word_pad_mask,
            need_weights=False,
        )[0]
        tgt = self.norm2(tgt + self.dropout(attended))
        tgt = self.norm3(tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))
        return clip_maps(tgt, T, h, w)


class CrossModalFPNDecoder(nn.Module):
    """Text-aware FPN from the encoder memory and the stride-4 backbone map to mask features.

    Args:
        feature_channels: input channels per level, stride 4 first (backbone C2, then the
            d_model-wide memory levels of strides 8, 16, 32).
        conv_dim: FPN width (= d_model).
        mask_dim: channels of the output mask features.
        dim_feedforward: FFN width of the vision-language blocks.
        nhead: attention heads of the vision-language blocks.
        sr_ratios: spatial reduction per level, stride 4 first.
        norm_groups: GroupNorm groups of the lateral and output convs.
        dropout: dropout of the vision-language blocks.
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        *,
        conv_dim: int = 256,
        mask_dim: int = 256,
        dim_feedforward: int = 2048,
        nhead: int = 8,
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        norm_groups: int = 8,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if len(feature_channels) != len(sr_ratios):
            raise ValueError("one sr_ratio per FPN level is needed")
        self.num_levels = len(feature_channels)
        for stage, in_channels in enumerate(feature_channels, start=1):
            adapter = ConvNorm(
                in_channels, conv_dim, 1, norm=nn.GroupNorm(norm_groups, conv_dim), bias=False
            )
            layer = ConvNorm(
                conv_dim,
                conv_dim,
                3,
                norm=nn.GroupNorm(norm_groups, conv_dim),
                relu=True,
                bias=False,
            )
            block = VisionLanguageBlock(
                conv_dim, nhead, dim_feedforward, dropout, sr_ratio=sr_ratios[stage - 1]
            )
            for conv in (adapter, layer):  # c2_xavier_fill
                nn.init.kaiming_uniform_(conv.weight, a=1)
            for p in block.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            self.add_module(f"adapter_{stage}", adapter)
            self.add_module(f"layer_{stage}", layer)
            self.add_module(f"cross_attn_{stage}", block)
        self.mask_features = ConvNorm(conv_dim, mask_dim, 3)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    def forward(
        self,
        levels: Sequence[torch.Tensor],
        positions: Sequence[torch.Tensor],
        words: torch.Tensor,
        word_pos: torch.Tensor,
        *,
        num_frames: int,
        pad_masks: Sequence[torch.Tensor | None] | None = None,
        word_pad_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask features at stride 4.

        Args:
            levels: per level, stride 4 first: N x C_l x h_l x w_l (backbone C2, then the
                encoder memory at strides 8, 16, 32).
            positions: N x conv_dim x h_l x w_l 2-D position embedding of each level.
            words, word_pos: B x L x conv_dim word features and positions.
            num_frames: T.
            pad_masks: N x h_l x w_l bool per level (True on padding), or None.
            word_pad_mask: B x L bool.

        Returns:
            N x mask_dim x h_0 x w_0.
        """
        if len(levels) != self.num_levels or len(positions) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} levels and positions")
        masks = list(pad_masks) if pad_masks is not None else [None] * self.num_levels
        y: torch.Tensor | None = None
        for stage in range(self.num_levels, 0, -1):  # top-down, stride 32 first
            x = getattr(self, f"adapter_{stage}")(levels[stage - 1])
            x = getattr(self, f"cross_attn_{stage}")(
                x,
                positions[stage - 1],
                words,
                word_pos,
                num_frames=num_frames,
                pad_mask=masks[stage - 1],
                word_pad_mask=word_pad_mask,
            )
            if y is not None:
                x = x + F.interpolate(y, size=x.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{stage}")(x)
        assert y is not None
        return self.mask_features(y)
