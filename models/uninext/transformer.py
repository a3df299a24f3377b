"""UNINEXT's DINO-style two-stage deformable transformer with early vision-language fusion.

Follows MasterBin-IIAU/UNINEXT@5ab0386 ``models/deformable_detr/deformable_transformer_dino.py``
(``DeformableTransformerVLDINO``); parameter names match the checkpoint under
``detr.detr.transformer.``: ``level_embed``, ``tgt_embed``, ``enc_output(_norm)``,
``encoder.layers.{i}.{self_attn, norm1, linear1, linear2, norm2}``, ``encoder.fusion_layers.{i}``
(upstream ``encoder.vl_layers.{i}.b_attn``), ``decoder.layers.{i}.{cross_attn, norm1, self_attn,
norm2, linear1, linear2, norm3}`` and ``decoder.ref_point_head``.

What differs from the Deformable DETR transformer of the other RVOS models:

* the encoder runs GLIP fusion before its first ``num_fusion_layers`` layers and returns the
  fused text features too;
* two-stage: every encoder token is a proposal (DINO cell boxes ``0.05 * 2**level``) scored by a
  language-free linear classifier; the top ``num_queries`` boxes seed the decoder, whose content
  queries are the learned ``tgt_embed`` (mixed query selection);
* the decoder is DAB-style: each layer's query position is ``ref_point_head`` applied to the sine
  embedding of the current 4-d reference box, and boxes are refined after every layer with
  "look forward twice" (the returned references are the refined, not yet detached, boxes).

Naming: N = batch, S = flattened multi-scale tokens, L = levels, Q = queries, C = d_model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.common.deformable_transformer import (
    DeformableDecoderLayer,
    DeformableEncoderLayer,
    encoder_reference_points,
    flatten_levels,
)
from models.common.layers import MLP, inverse_sigmoid
from models.uninext.fusion import BiAttentionBlock
from models.uninext.position import sine_box_embedding


class Encoder(nn.Module):
    """Deformable encoder; fusion blocks run before the first ``len(fusion_layers)`` layers."""

    def __init__(
        self, layers: list[DeformableEncoderLayer], fusion_layers: list[BiAttentionBlock]
    ) -> None:
        super().__init__()
        if len(fusion_layers) > len(layers):
            raise ValueError("more fusion layers than encoder layers")
        self.layers = nn.ModuleList(layers)
        self.fusion_layers = nn.ModuleList(fusion_layers)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        spatial_shapes: torch.Tensor,
        valid_ratios: torch.Tensor,
        padding_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """N x S x C tokens and N x T x Ct text -> (memory N x S x C, fused text N x T x Ct)."""
        reference_points = encoder_reference_points(spatial_shapes, valid_ratios)
        for index, layer in enumerate(self.layers):
            if index < len(self.fusion_layers):
                src, text = self.fusion_layers[index](src, text, text_mask)
            src = layer(src, pos, reference_points, spatial_shapes, padding_mask)
        return src, text


class Decoder(nn.Module):
    """DAB-style deformable decoder with iterative box refinement and look-forward-twice."""

    def __init__(self, layers: list[DeformableDecoderLayer], d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.sine_feats = d_model // 2  # per box coordinate; 128 upstream

    def forward(
        self,
        tgt: torch.Tensor,
        reference: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: torch.Tensor,
        valid_ratios: torch.Tensor,
        padding_mask: torch.Tensor,
        bbox_embed: nn.ModuleList,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run every layer.

        Args:
            tgt: N x Q x C content queries.
            reference: N x Q x 4 initial boxes (sigmoid space).
            bbox_embed: one box-delta MLP per layer (``bbox_embed[i]`` refines after layer i).

        Returns:
            (hs, refs): Ld x N x Q x C layer outputs and Ld x N x Q x 4 refined boxes.
        """
        output = tgt
        hs, refs = [], []
        ratios = torch.cat([valid_ratios, valid_ratios], -1)[:, None]  # N x 1 x L x 4
        for index, layer in enumerate(self.layers):
            reference_input = reference[:, :, None] * ratios
            query_pos = self.ref_point_head(
                sine_box_embedding(reference_input[:, :, 0], self.sine_feats)
            )
            output = layer(output, query_pos, reference_input, memory, spatial_shapes, padding_mask)
            refined = (bbox_embed[index](output) + inverse_sigmoid(reference)).sigmoid()
            hs.append(output)
            refs.append(refined)
            reference = refined.detach()
        return torch.stack(hs), torch.stack(refs)


@dataclass
class EncoderOutput:
    """The encoder's results for one batch of (frame, expression) pairs.

    Attributes:
        memory: N x S x C encoder tokens (levels concatenated).
        text: N x T x Ct text features after fusion.
        text_mask: N x T 0/1.
        spatial_shapes: L x 2 int64 (H_l, W_l).
        valid_ratios: N x L x 2 (w, h) share of each level that is not padding.
        padding_mask: N x S bool.
    """

    memory: torch.Tensor
    text: torch.Tensor
    text_mask: torch.Tensor
    spatial_shapes: torch.Tensor
    valid_ratios: torch.Tensor
    padding_mask: torch.Tensor

    def level_maps(self, levels: int) -> list[torch.Tensor]:
        """The first ``levels`` levels of ``memory`` as N x C x H_l x W_l maps."""
        maps, start = [], 0
        N, _, C = self.memory.shape
        for h, w in self.spatial_shapes.tolist()[:levels]:
            chunk = self.memory[:, start : start + h * w]
            maps.append(chunk.transpose(1, 2).reshape(N, C, h, w))
            start += h * w
        return maps


@dataclass
class DecoderOutput:
    """Two-stage selection and decoder results.

    Attributes:
        hs: Ld x N x Q x C decoder layer outputs.
        references: Ld x N x Q x 4 refined boxes after each layer (sigmoid space).
        init_reference: N x Q x 4 boxes of the selected proposals.
        proposal_logits: N x S encoder-side proposal scores (language-free).
        proposal_boxes: N x S x 4 proposal boxes before the sigmoid (inf where invalid).
        topk_indices: N x Q token index of each query slot's proposal.
    """

    hs: torch.Tensor
    references: torch.Tensor
    init_reference: torch.Tensor
    proposal_logits: torch.Tensor
    proposal_boxes: torch.Tensor
    topk_indices: torch.Tensor


class Transformer(nn.Module):
    """Encoder (with fusion), two-stage proposal selection and decoder.

    Args:
        encoder / decoder: the built stacks.
        d_model: channels.
        num_levels: feature levels.
        num_queries: proposals kept and decoder slots.
    """

    def __init__(
        self, encoder: Encoder, decoder: Decoder, d_model: int, num_levels: int, num_queries: int
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.num_queries = num_queries
        self.level_embed = nn.Parameter(torch.empty(num_levels, d_model))
        self.tgt_embed = nn.Embedding(num_queries, d_model)
        self.enc_output = nn.Linear(d_model, d_model)
        self.enc_output_norm = nn.LayerNorm(d_model)
        nn.init.normal_(self.level_embed)

    def encode(
        self,
        srcs: list[torch.Tensor],
        masks: list[torch.Tensor],
        poses: list[torch.Tensor],
        text: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> EncoderOutput:
        """Flatten the levels and run fusion + encoder.

        Args:
            srcs / poses: per level N x C x H_l x W_l projected features and position encodings.
            masks: per level N x H_l x W_l bool padding masks.
            text: N x T x Ct token features; text_mask: N x T 0/1.
        """
        src, pos, padding, shapes, ratios = flatten_levels(srcs, masks, poses, self.level_embed)
        memory, fused = self.encoder(src, pos, shapes, ratios, padding, text, text_mask)
        return EncoderOutput(memory, fused, text_mask, shapes, ratios, padding)

    def proposals(self, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """DINO-style per-token proposals: (N x S x C memory for the heads, N x S x 4 logits)."""
        N = enc.memory.shape[0]
        boxes, start = [], 0
        for level, (h, w) in enumerate(enc.spatial_shapes.tolist()):
            mask = enc.padding_mask[:, start : start + h * w].view(N, h, w)
            valid_h = (~mask[:, :, 0]).sum(1)
            valid_w = (~mask[:, 0, :]).sum(1)
            ys, xs = torch.meshgrid(
                torch.linspace(0, h - 1, h, device=mask.device),
                torch.linspace(0, w - 1, w, device=mask.device),
                indexing="ij",
            )
            grid = torch.stack([xs, ys], -1)
            scale = torch.stack([valid_w, valid_h], -1).view(N, 1, 1, 2)
            grid = (grid[None].expand(N, -1, -1, -1) + 0.5) / scale
            wh = torch.ones_like(grid) * 0.05 * (2.0**level)
            boxes.append(torch.cat((grid, wh), -1).view(N, -1, 4))
            start += h * w
        boxes = torch.cat(boxes, 1)
        valid = ((boxes > 0.01) & (boxes < 0.99)).all(-1, keepdim=True)
        boxes = torch.log(boxes / (1 - boxes))
        invalid = enc.padding_mask[..., None] | ~valid
        boxes = boxes.masked_fill(invalid, float("inf"))
        memory = enc.memory.masked_fill(invalid, 0.0)
        return self.enc_output_norm(self.enc_output(memory)), boxes

    def decode(
        self,
        enc: EncoderOutput,
        proposal_class: nn.Module,
        bbox_embed: nn.ModuleList,
        topk_indices: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """Select the top proposals and run the decoder.

        Args:
            proposal_class: the encoder-side classifier (C -> 1).
            bbox_embed: ``dec_layers + 1`` box MLPs; the last scores proposals.
            topk_indices: N x Q token indices to use instead of the top-k (parity checks
                against a reference whose ranking of near-tied scores differs); None in use.
        """
        memory, boxes = self.proposals(enc)
        logits = proposal_class(memory)[..., 0]
        coords = bbox_embed[len(self.decoder.layers)](memory) + boxes
        if topk_indices is None:
            topk_indices = torch.topk(logits, self.num_queries, dim=1)[1]
        init_reference = torch.gather(
            coords, 1, topk_indices[..., None].expand(-1, -1, 4)
        ).sigmoid()
        N = enc.memory.shape[0]
        tgt = self.tgt_embed.weight[None].expand(N, -1, -1)
        hs, refs = self.decoder(
            tgt,
            init_reference,
            enc.memory,
            enc.spatial_shapes,
            enc.valid_ratios,
            enc.padding_mask,
            bbox_embed,
        )
        return DecoderOutput(hs, refs, init_reference, logits, coords, topk_indices)
