"""Deformable DETR transformer with text-conditioned queries and iterative box refinement.

The single-stage transformer of SgMg, ReferFormer, MUTR and SOC (``fundamentalvision/Deformable-
DETR`` ``models/deformable_transformer.py`` as modified by ReferFormer): frames are independent
(batch N = clips x frames); the encoder is deformable self-attention over the multi-scale tokens;
the decoder runs self-attention among the queries, deformable cross-attention to the memory and an
FFN, all post-norm. The content query ``tgt`` is given by the model (the sentence feature for
SgMg / ReferFormer, zeros for SOC, MUTR's aggregated sentence), ``query_pos`` is the learned
query embedding, whose linear projection gives the initial 2-D reference points.

With box refinement (``bbox_embed`` passed to :meth:`DeformableTransformer.decode`), layer l's
box head refines the reference: after layer 0 it becomes a box ``[sigmoid(d_xy +
inverse_sigmoid(ref)), sigmoid(d_wh)]``, later layers add ``inverse_sigmoid`` of the previous box
to all four coordinates, and deformable sampling switches to the box form. The references are
detached between layers. The box heads belong to the model, not to the transformer: official
checkpoints store them twice (``transformer.decoder.bbox_embed.*`` aliases ``bbox_embed.*``);
converters fold the alias.

Parameter names (``encoder.layers.{i}.{self_attn,norm1,linear1,linear2,norm2}``,
``decoder.layers.{i}.{cross_attn,norm1,self_attn,norm2,linear1,linear2,norm3}``, ``level_embed``,
``reference_points``) match the official checkpoints under ``transformer.``.

Naming: N = batch (clips x frames), Q = queries, C = channels, L = levels, S = sum of H_l x W_l.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.common.deform_attn import MSDeformAttn
from models.common.layers import inverse_sigmoid


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention + FFN, post-norm."""

    def __init__(
        self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: torch.Tensor,
        padding_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """src, pos: N x S x C; reference_points: N x S x L x 2. Returns N x S x C."""
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, None, padding_mask)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class DeformableDecoderLayer(nn.Module):
    """Query self-attention, deformable cross-attention to the memory, FFN; post-norm."""

    def __init__(
        self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int
    ) -> None:
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        reference_points: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: torch.Tensor,
        memory_padding_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """tgt, query_pos: N x Q x C; reference_points: N x Q x L x (2|4). Returns N x Q x C."""
        q = (tgt + query_pos).transpose(0, 1)
        attn = self.self_attn(q, q, tgt.transpose(0, 1), need_weights=False)[0].transpose(0, 1)
        tgt = self.norm2(tgt + self.dropout2(attn))
        cross = self.cross_attn(
            tgt + query_pos, reference_points, memory, spatial_shapes, None, memory_padding_mask
        )
        tgt = self.norm1(tgt + self.dropout1(cross))
        ffn = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(ffn))


class DeformableEncoder(nn.Module):
    def __init__(self, layers: Sequence[DeformableEncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


class DeformableDecoder(nn.Module):
    def __init__(self, layers: Sequence[DeformableDecoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


@dataclass(frozen=True)
class EncoderMemory:
    """The encoder's output and what the decoder needs to read it.

    Attributes:
        memory: N x S x C encoded tokens of all levels.
        spatial_shapes: L x 2 int64 (H_l, W_l).
        padding_mask: N x S bool, True on padded tokens.
        valid_ratios: N x L x 2 (w, h) share of each level that is not padding.
    """

    memory: torch.Tensor
    spatial_shapes: torch.Tensor
    padding_mask: torch.Tensor
    valid_ratios: torch.Tensor

    def levels(self) -> list[torch.Tensor]:
        """The memory split back into maps: one N x C x H_l x W_l per level."""
        N, _, C = self.memory.shape
        sizes = [int(h) * int(w) for h, w in self.spatial_shapes.tolist()]
        parts = self.memory.split(sizes, dim=1)
        return [
            p.reshape(N, int(h), int(w), C).permute(0, 3, 1, 2).contiguous()
            for p, (h, w) in zip(parts, self.spatial_shapes.tolist(), strict=True)
        ]


@dataclass(frozen=True)
class DecoderOutput:
    """Per decoder layer outputs.

    Attributes:
        hs: D x N x Q x C query features after each layer.
        init_reference: N x Q x 2 initial reference points in [0, 1].
        references: D x N x Q x R references after each layer (R = 4 with box refinement,
            else 2 and equal to ``init_reference``).
    """

    hs: torch.Tensor
    init_reference: torch.Tensor
    references: torch.Tensor


def valid_ratios(mask: torch.Tensor) -> torch.Tensor:
    """N x H x W padding mask -> N x 2 (w, h) share of unpadded columns and rows."""
    _, H, W = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1).float() / H
    valid_w = (~mask[:, 0, :]).sum(1).float() / W
    return torch.stack([valid_w, valid_h], -1)


def encoder_reference_points(spatial_shapes: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """Pixel centres of every level, normalised by its valid area: N x S x L x 2."""
    points = []
    for level, (H, W) in enumerate(spatial_shapes.tolist()):
        ys, xs = torch.meshgrid(
            torch.linspace(0.5, H - 0.5, H, dtype=torch.float32, device=ratios.device),
            torch.linspace(0.5, W - 0.5, W, dtype=torch.float32, device=ratios.device),
            indexing="ij",
        )
        ys = ys.reshape(-1)[None] / (ratios[:, None, level, 1] * H)
        xs = xs.reshape(-1)[None] / (ratios[:, None, level, 0] * W)
        points.append(torch.stack((xs, ys), -1))
    return torch.cat(points, 1)[:, :, None] * ratios[:, None]


def flatten_levels(
    srcs: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    pos_embeds: Sequence[torch.Tensor],
    level_embed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate L levels into the encoder's token sequence.

    Args:
        srcs / pos_embeds: L maps N x C x H_l x W_l; masks: L masks N x H_l x W_l.
        level_embed: L x C, added to each level's positions.

    Returns:
        (src N x S x C, pos N x S x C, padding N x S bool, spatial shapes L x 2 int64,
        valid ratios N x L x 2).
    """
    shapes = torch.as_tensor(
        [tuple(s.shape[-2:]) for s in srcs], dtype=torch.long, device=srcs[0].device
    )
    src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
    pos = torch.cat(
        [
            p.flatten(2).transpose(1, 2) + level_embed[level].view(1, 1, -1)
            for level, p in enumerate(pos_embeds)
        ],
        1,
    )
    padding = torch.cat([m.flatten(1) for m in masks], 1)
    ratios = torch.stack([valid_ratios(m) for m in masks], 1)
    return src, pos, padding, shapes, ratios


class DeformableTransformer(nn.Module):
    """Encoder over multi-scale maps + decoder of text-conditioned queries.

    Args:
        d_model: channels (256).
        n_heads: attention heads (8).
        num_encoder_layers, num_decoder_layers: 4 / 4 (SgMg, ReferFormer, MUTR), 3 / 3 (SOC).
        dim_feedforward: FFN width (2048).
        dropout: 0.1.
        num_feature_levels: levels (4).
        enc_n_points, dec_n_points: sampling points per head and level (4).
    """

    def __init__(
        self,
        *,
        d_model: int = 256,
        n_heads: int = 8,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        num_feature_levels: int = 4,
        enc_n_points: int = 4,
        dec_n_points: int = 4,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.num_feature_levels = num_feature_levels
        self.encoder = DeformableEncoder(
            [
                DeformableEncoderLayer(
                    d_model, dim_feedforward, dropout, num_feature_levels, n_heads, enc_n_points
                )
                for _ in range(num_encoder_layers)
            ]
        )
        self.decoder = DeformableDecoder(
            [
                DeformableDecoderLayer(
                    d_model, dim_feedforward, dropout, num_feature_levels, n_heads, dec_n_points
                )
                for _ in range(num_decoder_layers)
            ]
        )
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reference_points = nn.Linear(d_model, 2)
        self.reset_parameters()

    @property
    def num_decoder_layers(self) -> int:
        return len(self.decoder.layers)

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    def encode(
        self,
        srcs: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor],
        pos_embeds: Sequence[torch.Tensor],
    ) -> EncoderMemory:
        """Encode the levels.

        Args:
            srcs: L maps N x C x H_l x W_l.
            masks: L padding masks N x H_l x W_l (True on padding).
            pos_embeds: L position maps N x C x H_l x W_l (``level_embed`` is added here).
        """
        if not len(srcs) == len(masks) == len(pos_embeds) == self.num_feature_levels:
            raise ValueError(
                f"expected {self.num_feature_levels} levels, got {len(srcs)} maps, "
                f"{len(masks)} masks, {len(pos_embeds)} positions"
            )
        src, pos, padding, shapes, ratios = flatten_levels(
            srcs, masks, pos_embeds, self.level_embed
        )
        reference = encoder_reference_points(shapes, ratios)
        for layer in self.encoder.layers:
            src = layer(src, pos, reference, shapes, padding)
        return EncoderMemory(src, shapes, padding, ratios)

    def decode(
        self,
        memory: EncoderMemory,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        bbox_embed: Sequence[nn.Module] | None = None,
    ) -> DecoderOutput:
        """Decode queries against the memory.

        Args:
            memory: from :meth:`encode`.
            tgt: N x Q x C content queries.
            query_pos: N x Q x C query positions (also give the initial references).
            bbox_embed: one box head per decoder layer (box refinement), or None.
        """
        if bbox_embed is not None and len(bbox_embed) != self.num_decoder_layers:
            raise ValueError(
                f"{len(bbox_embed)} box heads for {self.num_decoder_layers} decoder layers"
            )
        reference = self.reference_points(query_pos).sigmoid()
        init_reference = reference
        ratios = memory.valid_ratios
        output = tgt
        hs, references = [], []
        for index, layer in enumerate(self.decoder.layers):
            if reference.shape[-1] == 4:
                ref_input = reference[:, :, None] * torch.cat([ratios, ratios], -1)[:, None]
            else:
                ref_input = reference[:, :, None] * ratios[:, None]
            output = layer(
                output,
                query_pos,
                ref_input,
                memory.memory,
                memory.spatial_shapes,
                memory.padding_mask,
            )
            if bbox_embed is not None:
                delta = bbox_embed[index](output)
                if reference.shape[-1] == 4:
                    reference = (delta + inverse_sigmoid(reference)).sigmoid()
                else:
                    xy = delta[..., :2] + inverse_sigmoid(reference)
                    reference = torch.cat([xy, delta[..., 2:]], -1).sigmoid()
                reference = reference.detach()
            hs.append(output)
            references.append(reference)
        return DecoderOutput(torch.stack(hs), init_reference, torch.stack(references))

    def forward(
        self,
        srcs: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor],
        pos_embeds: Sequence[torch.Tensor],
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        bbox_embed: Sequence[nn.Module] | None = None,
    ) -> tuple[EncoderMemory, DecoderOutput]:
        """:meth:`encode` then :meth:`decode`."""
        memory = self.encode(srcs, masks, pos_embeds)
        return memory, self.decode(memory, tgt, query_pos, bbox_embed)
