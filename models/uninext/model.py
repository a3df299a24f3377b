"""The UNINEXT RVOS network: named stages instead of one ``forward``.

``encode_text`` (BERT, once per expression) and ``encode_images`` (backbone + input projections +
position encodings, once per frame: the early fusion happens after it, so a frame's features serve
every expression) feed ``decode`` (fusion, encoder, two-stage selection, decoder, heads), one
(frame, expression) pair per batch row. ``mask_logits`` then runs the dynamic mask head for the
chosen query slots only, so inference never computes all 900 masks.

Module names mirror the official checkpoint so that :mod:`models.uninext.convert` is a short key
map (see there). Naming: N = batch of (frame, expression) pairs, Q = query slots, T = tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.common.deformable_transformer import DeformableDecoderLayer, DeformableEncoderLayer
from models.common.dynamic_mask_head import DynamicMaskHead
from models.common.layers import (
    MLP,
    build_input_projections,
    inverse_sigmoid,
    pad_frames,
    resize_mask,
)
from models.common.position_encoding import sine_position_2d
from models.uninext.backbones import build_backbone
from models.uninext.fusion import BiAttentionBlock
from models.uninext.heads import MaskHeadSmallConv, VLAlign, aligned_bilinear, pool_text
from models.uninext.spec import UninextSpec
from models.uninext.text import BertTextEncoder
from models.uninext.transformer import Decoder, DecoderOutput, Encoder, EncoderOutput, Transformer

MASK_STRIDE = 8  # mask features and relative coordinates
MASK_OUT_STRIDE = 4  # returned mask logits


@dataclass
class TextFeatures:
    """BERT features of E expressions: ``hidden`` E x T x Ct, ``mask`` E x T (0/1)."""

    hidden: torch.Tensor
    mask: torch.Tensor

    def repeat_for(self, index: int, count: int) -> TextFeatures:
        """Expression ``index`` repeated ``count`` times (one row per frame of a batch)."""
        return TextFeatures(
            self.hidden[index : index + 1].expand(count, -1, -1),
            self.mask[index : index + 1].expand(count, -1),
        )


@dataclass
class VisualFeatures:
    """Per-level inputs of the transformer for N frames (independent of the text).

    Attributes:
        srcs: per level N x C x H_l x W_l projected features.
        masks: per level N x H_l x W_l bool, True on padding.
        poses: per level N x C x H_l x W_l sine position encodings.
        image_sizes: N x 2 int64 (h, w) of the unpadded network input.
    """

    srcs: list[torch.Tensor]
    masks: list[torch.Tensor]
    poses: list[torch.Tensor]
    image_sizes: torch.Tensor

    def select(self, rows: slice | torch.Tensor) -> VisualFeatures:
        return VisualFeatures(
            [s[rows] for s in self.srcs],
            [m[rows] for m in self.masks],
            [p[rows] for p in self.poses],
            self.image_sizes[rows],
        )

    def nbytes(self) -> int:
        tensors = [*self.srcs, *self.masks, *self.poses]
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class LayerPredictions:
    """One decoder layer's heads for every query slot.

    Attributes:
        logits: N x Q class logits (VL_Align against the pooled expression).
        ious: N x Q IoU logits.
        boxes: N x Q x 4 sigmoid boxes (cx, cy, w, h), normalised to the unpadded input.
        mask_params: N x Q x P dynamic mask head parameters.
        mask_centers: N x Q x 2 mask reference points (x, y) in input pixels.
    """

    logits: torch.Tensor
    ious: torch.Tensor
    boxes: torch.Tensor
    mask_params: torch.Tensor
    mask_centers: torch.Tensor

    @property
    def scores(self) -> torch.Tensor:
        """N x Q official RVOS score sqrt(sigmoid(cls) * sigmoid(iou))."""
        return torch.sqrt(self.logits.sigmoid() * self.ious.sigmoid())


@dataclass
class Predictions:
    """Everything ``decode`` computes for a batch of (frame, expression) pairs.

    Attributes:
        layers: heads of each decoder layer (the last is the prediction; the others are
            deep-supervision outputs, computed only when asked).
        mask_feats: N x Cm x H/8 x W/8 mask features.
        encoder: fusion/encoder results; decoder: two-stage selection and decoder results.
        pooled_text: N x Ct mean of the fused expression tokens.
    """

    layers: list[LayerPredictions]
    mask_feats: torch.Tensor
    encoder: EncoderOutput
    decoder: DecoderOutput
    pooled_text: torch.Tensor

    @property
    def final(self) -> LayerPredictions:
        return self.layers[-1]


class UninextModel(nn.Module):
    """UNINEXT for referring segmentation; see the module docstring for the stages."""

    def __init__(
        self,
        *,
        backbone: nn.Module,
        input_proj: nn.ModuleList,
        text_encoder: BertTextEncoder,
        transformer: Transformer,
        class_embed: nn.ModuleList,
        proposal_class: nn.Linear,
        bbox_embed: nn.ModuleList,
        iou_head: nn.ModuleList,
        controller: MLP,
        mask_head: MaskHeadSmallConv,
        dynamic_mask_head: DynamicMaskHead,
        spec: UninextSpec,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.input_proj = input_proj
        self.text_encoder = text_encoder
        self.transformer = transformer
        self.class_embed = class_embed
        self.proposal_class = proposal_class
        self.bbox_embed = bbox_embed
        self.iou_head = iou_head
        self.controller = controller
        self.mask_head = mask_head
        self.dynamic_mask_head = dynamic_mask_head
        # The architecture record (weights files and producers rebuild / adjust from it); the
        # test-time resize rule is read from it, so a producer option can change it.
        self.spec = spec
        mean, std = torch.tensor(spec.pixel_mean), torch.tensor(spec.pixel_std)
        self.register_buffer("pixel_mean", mean.view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(3, 1, 1), persistent=False)

    @property
    def min_size(self) -> int:
        """Test-time shortest edge (``ResizeShortestEdge``)."""
        return int(self.spec.min_size)

    @property
    def max_size(self) -> int:
        """Test-time cap on the longest edge."""
        return int(self.spec.max_size)

    @property
    def size_divisibility(self) -> int:
        return int(self.backbone.size_divisibility)

    @property
    def num_dec_layers(self) -> int:
        return len(self.transformer.decoder.layers)

    # ---- stage 1: text -------------------------------------------------------------------
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        """E x T token ids and 0/1 mask -> BERT features (padded tokens stay masked)."""
        hidden = self.text_encoder(input_ids, attention_mask)
        return TextFeatures(hidden, attention_mask)

    # ---- stage 2: images -----------------------------------------------------------------
    def prepare_images(
        self,
        images: torch.Tensor,
        image_sizes: torch.Tensor | None = None,
        *,
        normalized: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise and pad network-sized frames.

        Args:
            images: N x 3 x H x W RGB in 0..255 (uint8 or float), already resized.
            image_sizes: N x 2 (h, w) content size of each row when frames of different sizes
                were batched top-left (training); None when every row fills H x W.
            normalized: ``images`` are already ``(x - pixel_mean) / pixel_std`` (float).

        Returns:
            (N x 3 x Hp x Wp normalised images, zero outside the content and padded
            bottom/right to the backbone's size divisibility, N x Hp x Wp bool padding mask).
        """
        if normalized:
            x = images.to(self.pixel_mean.dtype)
        else:
            x = (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        x, mask = pad_frames(x, max(self.size_divisibility, 1))
        if image_sizes is not None:
            for row, (h, w) in enumerate(image_sizes.tolist()):
                mask[row] = True
                mask[row, :h, :w] = False
            x = x.masked_fill(mask[:, None], 0.0)
        return x, mask

    def encode_images(
        self,
        images: torch.Tensor,
        image_sizes: torch.Tensor | None = None,
        *,
        normalized: bool = False,
    ) -> VisualFeatures:
        """Per-level transformer inputs of network-sized frames.

        Args:
            images: N x 3 x H x W RGB 0..255.
            image_sizes: N x 2 content sizes of a padded training batch (see prepare_images).
            normalized: the images are already normalised (see prepare_images).
        """
        N, _, H, W = images.shape
        x, mask = self.prepare_images(images, image_sizes, normalized=normalized)
        feats = self.backbone(x)
        srcs, masks = [], []
        for level, feat in enumerate(feats):
            srcs.append(self.input_proj[level](feat))
            masks.append(resize_mask(mask, tuple(feat.shape[-2:])))
        for level in range(len(feats), len(self.input_proj)):
            src = self.input_proj[level](feats[-1] if level == len(feats) else srcs[-1])
            srcs.append(src)
            masks.append(resize_mask(masks[0], tuple(src.shape[-2:])))
        half = srcs[0].shape[1] // 2
        poses = [sine_position_2d(m, half).to(s.dtype) for m, s in zip(masks, srcs, strict=True)]
        if image_sizes is None:
            sizes = torch.tensor([[H, W]], dtype=torch.long, device=images.device).expand(N, 2)
        else:
            sizes = image_sizes.to(device=images.device, dtype=torch.long)
        return VisualFeatures(srcs, masks, poses, sizes)

    # ---- stage 3: fusion, transformer, heads ---------------------------------------------
    def decode(
        self,
        visual: VisualFeatures,
        text: TextFeatures,
        *,
        all_layers: bool = False,
        topk_indices: torch.Tensor | None = None,
    ) -> Predictions:
        """Run fusion, encoder, two-stage selection, decoder and the heads.

        Args:
            visual: N frames' features; text: N expressions (row i pairs with frame i).
            all_layers: also compute the heads of the intermediate decoder layers (training).
            topk_indices: force the proposal order (parity checks only; see Transformer.decode).
        """
        # The official transformer always runs in float32 (custom_fwd(cast_inputs=float32)),
        # also under mixed precision: so does this one.
        device_type = visual.srcs[0].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            enc = self.transformer.encode(
                [s.float() for s in visual.srcs],
                visual.masks,
                [p.float() for p in visual.poses],
                text.hidden.float(),
                text.mask,
            )
            dec = self.transformer.decode(enc, self.proposal_class, self.bbox_embed, topk_indices)
        pooled = pool_text(enc.text, enc.text_mask)[:, None]
        last = self.num_dec_layers - 1
        which = range(self.num_dec_layers) if all_layers else [last]
        layers = [self._layer_heads(dec, level, pooled, visual.image_sizes) for level in which]
        levels = enc.level_maps(3)
        mask_feats = self.mask_head(levels)
        return Predictions(layers, mask_feats, enc, dec, pooled[:, 0])

    def _layer_heads(
        self, dec: DecoderOutput, level: int, pooled: torch.Tensor, image_sizes: torch.Tensor
    ) -> LayerPredictions:
        hs = dec.hs[level]
        reference = dec.init_reference if level == 0 else dec.references[level - 1]
        logits = self.class_embed[level](hs, pooled)[..., 0]
        boxes = (self.bbox_embed[level](hs) + inverse_sigmoid(reference)).sigmoid()
        ious = self.iou_head[level](hs)[..., 0]
        scale = image_sizes.flip(-1).to(reference.dtype)[:, None, :]  # (w, h)
        centers = reference[..., :2] * scale
        return LayerPredictions(logits, ious, boxes, self.controller(hs), centers)

    def mask_logits(
        self, predictions: Predictions, slots: torch.Tensor, layer: int = -1
    ) -> torch.Tensor:
        """Stride-4 mask logits of chosen query slots.

        Args:
            slots: N x K int64 query slots per row.
            layer: which decoder layer's heads (default the last).

        Returns:
            N x K x (H/8 * 2) x (W/8 * 2) logits (of the padded input).
        """
        heads = predictions.layers[layer]
        index = slots[..., None]
        params = torch.gather(
            heads.mask_params, 1, index.expand(-1, -1, heads.mask_params.shape[-1])
        )
        centers = torch.gather(heads.mask_centers, 1, index.expand(-1, -1, 2))
        logits = self.dynamic_mask_head(predictions.mask_feats, params, centers, MASK_STRIDE)
        N, K = slots.shape
        up = aligned_bilinear(logits.flatten(0, 1), MASK_STRIDE // MASK_OUT_STRIDE)
        return up.view(N, K, *up.shape[-2:])


def build_uninext(spec: UninextSpec) -> UninextModel:
    """A randomly initialised UNINEXT with the architecture ``spec`` describes."""
    d = spec.d_model
    backbone = build_backbone(spec.backbone)
    in_channels = list(backbone.out_channels)
    input_proj = build_input_projections(in_channels, d, spec.num_levels - len(in_channels))
    lang_dim = spec.text.hidden_size
    layer_args = (d, spec.ffn_dim, spec.dropout, spec.num_levels, spec.num_heads)
    encoder = Encoder(
        [DeformableEncoderLayer(*layer_args, spec.enc_points) for _ in range(spec.enc_layers)],
        [
            BiAttentionBlock(d, lang_dim, spec.fusion_dim, spec.fusion_heads, 1.0 / spec.enc_layers)
            for _ in range(spec.num_fusion_layers)
        ],
    )
    decoder = Decoder(
        [DeformableDecoderLayer(*layer_args, spec.dec_points) for _ in range(spec.dec_layers)], d
    )
    transformer = Transformer(encoder, decoder, d, spec.num_levels, spec.num_queries)
    bbox_embed = nn.ModuleList(MLP(d, d, 4, 3) for _ in range(spec.dec_layers + 1))
    for mlp in bbox_embed:
        nn.init.zeros_(mlp.layers[-1].weight)
        nn.init.zeros_(mlp.layers[-1].bias)
    prior = -math.log((1 - 0.01) / 0.01)
    proposal_class = nn.Linear(d, 1)
    nn.init.constant_(proposal_class.bias, prior)
    iou_head = nn.ModuleList(nn.Linear(d, 1) for _ in range(spec.dec_layers))
    for head in iou_head:
        nn.init.constant_(head.bias, prior)
    dynamic = DynamicMaskHead(
        spec.mask_channels, spec.dynamic_channels, spec.controller_layers, coords_first=True
    )
    controller = MLP(d, d, dynamic.num_params, 3)
    for layer in controller.layers:
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return UninextModel(
        backbone=backbone,
        input_proj=input_proj,
        text_encoder=BertTextEncoder(spec.text),
        transformer=transformer,
        class_embed=nn.ModuleList(VLAlign(d, lang_dim) for _ in range(spec.dec_layers)),
        proposal_class=proposal_class,
        bbox_embed=bbox_embed,
        iou_head=iou_head,
        controller=controller,
        mask_head=MaskHeadSmallConv(d, spec.mask_hidden, spec.mask_channels),
        dynamic_mask_head=dynamic,
        spec=spec,
    )
