"""SAM's prompt encoder and mask decoder as SAM 2 builds them (``_build_sam_heads``): 256-d,
a two-way transformer of depth 2 with 8 heads, 3 + 1 mask tokens, an IoU head with sigmoid,
an object-score token with a 3-layer MLP head and high-resolution skips.

Parameter names equal the checkpoint's ``sam_prompt_encoder.*`` / ``sam_mask_decoder.*`` keys
(facebookresearch/sam2@2b90b9f ``sam2/modeling/sam/{prompt_encoder,mask_decoder,transformer}.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vos.sam2.layers import MLP, LayerNorm2d
from vos.sam2.position import RandomFourierEncoding

NUM_MASK_TOKENS = 4  # one single-mask token and three multimask tokens


class Attention(nn.Module):
    """Multi-head attention with an optional internal down-projection (``downsample_rate``)
    and key/value input width ``kv_dim`` (names ``q_proj`` / ``k_proj`` / ``v_proj`` /
    ``out_proj``)."""

    def __init__(
        self, dim: int, num_heads: int, downsample: int = 1, kv_dim: int | None = None
    ) -> None:
        super().__init__()
        inner = dim // downsample
        kv_dim = dim if kv_dim is None else kv_dim
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(kv_dim, inner)
        self.v_proj = nn.Linear(kv_dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """B x N x C -> B x heads x N x C/heads."""
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """B x heads x N x c -> B x N x C, then the output projection."""
        b, h, n, c = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(b, n, h * c))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self.heads(self.q_proj(q)), self.heads(self.k_proj(k)), self.heads(self.v_proj(v))
        return self.merge(F.scaled_dot_product_attention(q, k, v))


class TwoWayBlock(nn.Module):
    """Token self-attention, token->image, token MLP, image->token (post-norm)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, 2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample=2)
        self.skip_first_pe = skip_first_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)  # no residual on the first layer
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Depth-2 two-way transformer and a final token->image attention."""

    def __init__(
        self, dim: int = 256, depth: int = 2, num_heads: int = 8, mlp_dim: int = 2048
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayBlock(dim, num_heads, mlp_dim, skip_first_pe=i == 0) for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(
        self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """B x C x h x w image, its PE, B x N x C tokens -> (B x N x C, B x hw x C)."""
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


class PromptEncoder(nn.Module):
    """Points (labels 1 / 0 / 2 / 3, -1 padding) and a dense mask prompt -> embeddings."""

    def __init__(self, dim: int, embed_size: int, image_size: int, mask_in_chans: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.embed_size = embed_size
        self.image_size = image_size
        self.pe_layer = RandomFourierEncoding(dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        self.mask_input_size = 4 * embed_size
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    def dense_pe(self) -> torch.Tensor:
        """1 x C x h x w: the encoding of the image-embedding grid."""
        return self.pe_layer.grid(self.embed_size, self.embed_size)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """B x N x 2 pixel coordinates (x, y) and B x N labels -> B x (N + 1) x C; one padding
        point is appended (no boxes are ever passed here)."""
        b = coords.shape[0]
        coords = torch.cat([coords + 0.5, coords.new_zeros(b, 1, 2)], dim=1)
        labels = torch.cat([labels, -labels.new_ones(b, 1)], dim=1)
        emb = self.pe_layer.points(coords, (self.image_size, self.image_size))
        emb = torch.where((labels == -1)[..., None], self.not_a_point_embed.weight, emb)
        for label, table in enumerate(self.point_embeddings):
            emb = torch.where((labels == label)[..., None], emb + table.weight, emb)
        return emb

    def forward(
        self, coords: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (sparse B x N x C, dense B x C x h x w); ``mask`` is B x 1 x 4h x 4w logits."""
        sparse = self.embed_points(coords, labels)
        if mask is not None:
            dense = self.mask_downscaling(mask)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1)
            dense = dense.expand(coords.shape[0], -1, self.embed_size, self.embed_size)
        return sparse, dense


@dataclass(frozen=True)
class DecoderOutput:
    """The mask decoder's outputs for a batch of B prompts.

    Attributes:
        masks: B x M x 4h x 4w low-resolution logits (M = 3 multimask, else 1).
        ious: B x M predicted IoU.
        tokens: B x M' x C output tokens for the object pointer (M' = 3 multimask, else 1).
        object_scores: B x 1 object-score logits.
    """

    masks: torch.Tensor
    ious: torch.Tensor
    tokens: torch.Tensor
    object_scores: torch.Tensor


class MaskDecoder(nn.Module):
    """SAM 2's mask decoder with object-score prediction and high-resolution skips."""

    def __init__(self, dim: int = 256, stability_fallback: bool = True) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(NUM_MASK_TOKENS, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(NUM_MASK_TOKENS)
        )
        self.iou_prediction_head = MLP(dim, 256, NUM_MASK_TOKENS, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)
        # apply_postprocessing: a single mask below stability 0.98 falls back to the best of 3.
        self.stability_fallback = stability_fallback

    def forward(
        self,
        image: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        multimask: bool,
    ) -> DecoderOutput:
        """B x C x h x w conditioned features, 1 x C x h x w PE, prompts, the projected
        stride-4 / stride-8 features -> :class:`DecoderOutput`."""
        b = sparse.shape[0]
        out_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0
        )
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1), sparse], dim=1)
        src = image + dense
        pos = image_pe.expand(b, -1, -1, -1)
        hs, src = self.transformer(src, pos, tokens)
        c, h, w = image.shape[1:]
        src = src.transpose(1, 2).reshape(b, c, h, w)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res
        up = act1(ln1(dc1(src) + feat_s1))
        up = act2(dc2(up) + feat_s0)
        mask_tokens = hs[:, 2 : 2 + NUM_MASK_TOKENS]
        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        bu, cu, hu, wu = up.shape
        masks = (hyper @ up.reshape(bu, cu, hu * wu)).reshape(bu, -1, hu, wu)
        ious = self.iou_prediction_head(hs[:, 1])
        scores = self.pred_obj_score_head(hs[:, 0])
        if multimask:
            return DecoderOutput(masks[:, 1:], ious[:, 1:], mask_tokens[:, 1:], scores)
        single, single_iou = masks[:, :1], ious[:, :1]
        if self.stability_fallback:
            single, single_iou = self._stability_fallback(masks, ious)
        return DecoderOutput(single, single_iou, mask_tokens[:, :1], scores)

    @staticmethod
    def _stability_fallback(
        masks: torch.Tensor, ious: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``dynamic_multimask_via_stability`` (delta 0.05, threshold 0.98)."""
        best = ious[:, 1:].argmax(dim=-1)
        rows = torch.arange(masks.shape[0], device=masks.device)
        best_mask = masks[:, 1:][rows, best][:, None]
        best_iou = ious[:, 1:][rows, best][:, None]
        flat = masks[:, :1].flatten(-2)
        inter = (flat > 0.05).sum(-1).float()
        union = (flat > -0.05).sum(-1).float()
        stable = torch.where(union > 0, inter / union, 1.0) >= 0.98
        return (
            torch.where(stable[..., None, None], masks[:, :1], best_mask),
            torch.where(stable, ious[:, :1], best_iou),
        )
