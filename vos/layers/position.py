"""DETR-style sine position embedding on the stride-16 grid (aot-benchmark
``networks/layers/position.py::PositionEmbeddingSine`` with ``normalize=True``)."""

from __future__ import annotations

import math

import torch


def sine_position_embedding(
    size_2d: tuple[int, int],
    dim: int,
    *,
    temperature: float = 10000.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The ``1 x (h*w) x dim`` sine embedding: ``dim/2`` features for y, then ``dim/2`` for x.

    Coordinates are normalised by (last index + 1e-6) and scaled by 2*pi; within each half the
    features alternate sin (even) / cos (odd), as the official module computes them.
    """
    h, w = size_2d
    feats = dim // 2
    eps = 1e-6
    y = torch.arange(h, device=device, dtype=torch.float32)
    x = torch.arange(w, device=device, dtype=torch.float32)
    y = y / (y[-1:] + eps) * (2 * math.pi)
    x = x / (x[-1:] + eps) * (2 * math.pi)
    dim_t = torch.arange(feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / feats)

    def encode(coord: torch.Tensor) -> torch.Tensor:
        p = coord[:, None] / dim_t  # n x feats
        return torch.stack((p[:, 0::2].sin(), p[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(h, w, feats)
    pos_x = encode(x)[None, :, :].expand(h, w, feats)
    return torch.cat((pos_y, pos_x), dim=2).reshape(1, h * w, dim)
