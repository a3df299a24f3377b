"""Multi-scale deformable attention (Deformable DETR), in plain PyTorch.

Every RVOS model here (SgMg, ReferFormer, MUTR, SOC, UNINEXT) uses the same module with the
parameter names of ``fundamentalvision/Deformable-DETR`` ``models/ops/modules/ms_deform_attn.py``:
``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``. The official repos
call a compiled CUDA op whose batch must divide by ``min(batch, 64)``; this version is the
``grid_sample`` formulation (bilinear, zero padding, ``align_corners=False``), numerically the
same function, with no limit on the batch (frames) size.

Naming: N = batch (frames x clips), Lq = queries, Lin = flattened multi-scale tokens,
M = heads, D = channels per head, L = levels, P = points per level.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Elements of the largest intermediates built at once (the sampled values x weights; the
# offsets, weights and locations of MSDeformAttn): queries run in chunks of this bound, so the
# memory stays flat in frames x queries.
SAMPLE_CHUNK_ELEMENTS = 2**22


def ms_deform_attn_sample(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor | list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """Sample and weight the multi-scale value maps.

    Queries are independent, so they are sampled in chunks of at most ``chunk_elements``
    (default :data:`SAMPLE_CHUNK_ELEMENTS`) sampled values each; every output element is
    computed by the same operations whatever the chunking, so the result does not depend on it.

    Args:
        value: N x Lin x M x D.
        spatial_shapes: L x 2 (H_l, W_l), with sum(H_l * W_l) == Lin.
        sampling_locations: N x Lq x M x L x P x 2, normalised (x, y) in [0, 1].
        attention_weights: N x Lq x M x L x P, softmax-normalised over L x P.
        chunk_elements: the memory bound (sampled values per chunk).

    Returns:
        N x Lq x (M * D).
    """
    N, _, M, D = value.shape
    _, Lq, _, L, P, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes]
    value_per_level = value.split([h * w for h, w in shapes], dim=1)
    # N x HW x M x D -> (N*M) x D x H x W
    values = [
        v.flatten(2).transpose(1, 2).reshape(N * M, D, h, w)
        for v, (h, w) in zip(value_per_level, shapes, strict=True)
    ]
    # N x Lq x M x L x P x 2 -> (N*M) x Lq x L x P x 2
    grids = (2 * sampling_locations - 1).transpose(1, 2).flatten(0, 1)
    weights = attention_weights.transpose(1, 2).reshape(N * M, 1, Lq, L * P)
    per_query = max(N * M * D * L * P, 1)
    step = max(1, (chunk_elements or SAMPLE_CHUNK_ELEMENTS) // per_query)
    chunks = []
    for q0 in range(0, Lq, step):
        q1 = min(q0 + step, Lq)
        sampled = [
            F.grid_sample(
                value_l,
                grids[:, q0:q1, level],
                mode="bilinear",
                padding_mode="zeros",
                align_corners=False,
            )  # (N*M) x D x Lq' x P
            for level, value_l in enumerate(values)
        ]
        chunks.append((torch.stack(sampled, dim=-2).flatten(-2) * weights[:, :, q0:q1]).sum(-1))
    out = torch.cat(chunks, dim=-1) if len(chunks) > 1 else chunks[0]
    return out.view(N, M * D, Lq).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention with the official parameter layout.

    Args:
        d_model: channels of queries and values.
        n_levels: feature levels.
        n_heads: attention heads (``d_model`` must divide by it).
        n_points: sampling points per head and level.
    """

    def __init__(
        self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: offsets start on a ring of growing radius."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: torch.Tensor,
        input_level_start_index: torch.Tensor | None = None,
        input_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from each query to P points per head and level around its reference.

        Args:
            query: N x Lq x C.
            reference_points: N x Lq x L x 2 (normalised x, y) or N x Lq x L x 4 (cx, cy, w, h).
            input_flatten: N x Lin x C, the levels' tokens concatenated.
            input_spatial_shapes: L x 2 int64 (H_l, W_l).
            input_level_start_index: unused (kept for the official call signature).
            input_padding_mask: N x Lin bool, True on padded tokens (their values become 0).

        Returns:
            N x Lq x C.
        """
        del input_level_start_index
        N, Lq, _ = query.shape
        _, Lin, _ = input_flatten.shape
        shapes = input_spatial_shapes
        if int((shapes[:, 0] * shapes[:, 1]).sum()) != Lin:
            raise ValueError(f"spatial shapes {shapes.tolist()} do not cover {Lin} input tokens")
        M, L, P = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(N, Lin, M, self.d_model // M)
        if reference_points.shape[-1] not in (2, 4):
            raise ValueError(
                f"reference_points last dim must be 2 or 4, got {reference_points.shape[-1]}"
            )
        # Queries are independent: offsets, weights and locations (N x Lq x M x L x P x 2
        # each, 145 MB for 100 frames of 1420 tokens) are built a bounded chunk at a time.
        step = max(1, SAMPLE_CHUNK_ELEMENTS // max(N * M * L * P * 2, 1))
        chunks = [
            self._attend(
                query[:, q0 : q0 + step], reference_points[:, q0 : q0 + step], value, shapes
            )
            for q0 in range(0, Lq, step)
        ]
        out = torch.cat(chunks, dim=1) if len(chunks) > 1 else chunks[0]
        return self.output_proj(out)

    def _attend(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        shapes: torch.Tensor,
    ) -> torch.Tensor:
        """The sampled values of some queries (N x Lq' x C) from the projected ``value``."""
        N, Lq, _ = query.shape
        M, L, P = self.n_heads, self.n_levels, self.n_points
        offsets = self.sampling_offsets(query).view(N, Lq, M, L, P, 2)
        weights = self.attention_weights(query).view(N, Lq, M, L * P).softmax(-1)
        weights = weights.view(N, Lq, M, L, P)
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([shapes[..., 1], shapes[..., 0]], -1).to(offsets.dtype)
            locations = (
                reference_points[:, :, None, :, None, :]
                + offsets / normalizer[None, None, None, :, None, :]
            )
        else:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / P * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        return ms_deform_attn_sample(value, shapes, locations, weights)
