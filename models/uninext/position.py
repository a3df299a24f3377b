"""DAB-DETR's sine embedding of reference boxes (UNINEXT's decoder query positions).

The 2-D feature-map encoding and ``inverse_sigmoid`` are shared (``models.common``); this one is
specific to the DINO-style decoder: each of (cx, cy, w, h) gets ``num_feats`` interleaved sin/cos
features (temperature 10000, scale 2 pi) and x, y are exchanged
(MasterBin-IIAU/UNINEXT@5ab0386 ``deformable_transformer_dino.py`` ``get_sine_pos_embed``).
"""

from __future__ import annotations

import math

import torch


def sine_box_embedding(
    boxes: torch.Tensor, num_feats: int = 128, temperature: float = 10000.0
) -> torch.Tensor:
    """N x Q x 4 boxes (cx, cy, w, h) in [0, 1] -> N x Q x (4 * num_feats), order (y, x, w, h)."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    per_coord = []
    for coord in boxes.split(1, dim=-1):
        x = coord * (2 * math.pi) / dim_t
        per_coord.append(torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2))
    per_coord[0], per_coord[1] = per_coord[1], per_coord[0]
    return torch.cat(per_coord, dim=-1)
