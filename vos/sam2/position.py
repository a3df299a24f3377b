"""Position encodings of SAM 2: 2-D sine maps, random Fourier features, 1-D sine, axial RoPE.

Layouts follow facebookresearch/sam2@2b90b9f ``sam2/modeling/position_encoding.py`` and
``sam2_utils.get_1d_sine_pe``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sine_position_map(channels: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Normalised 2-D sine encoding (``PositionEmbeddingSine``, temperature 1e4, scale 2 pi).

    Returns:
        1 x channels x height x width; the first half encodes y, the second x.
    """
    half = channels // 2
    eps = 1e-6
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = y / (y[-1] + eps) * 2 * math.pi
    x = x / (x[-1] + eps) * 2 * math.pi
    dim_t = torch.arange(half, dtype=torch.float32, device=device)
    dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)
    pos_y = _interleave_sin_cos(y[:, None] / dim_t)  # height x half
    pos_x = _interleave_sin_cos(x[:, None] / dim_t)  # width x half
    grid_y = pos_y[:, None, :].expand(height, width, half)
    grid_x = pos_x[None, :, :].expand(height, width, half)
    return torch.cat([grid_y, grid_x], dim=-1).permute(2, 0, 1)[None].contiguous()


def _interleave_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    """N x D angles -> N x D: sin of the even columns and cos of the odd ones, interleaved."""
    return torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], dim=2).flatten(1)


def sine_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """N positions -> N x dim (``get_1d_sine_pe``: all sines, then all cosines)."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=positions.device)
    dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)
    angles = positions.float()[:, None] / dim_t
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class RandomFourierEncoding(nn.Module):
    """SAM's ``PositionEmbeddingRandom``: coordinates in [0, 1] through a fixed Gaussian matrix.

    The matrix is a checkpoint buffer (``positional_encoding_gaussian_matrix``, 2 x C/2).
    """

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """... x 2 coordinates (x, y) in [0, 1] -> ... x 2 num_feats."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([coords.sin(), coords.cos()], dim=-1)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """The dense encoding of a height x width grid: 1 x C x height x width."""
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
        x = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
        coords = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # H x W x (x, y)
        return self.encode(coords).permute(2, 0, 1)[None]

    def points(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """B x N x 2 pixel coordinates (x, y) -> B x N x C."""
        scale = torch.tensor([image_size[1], image_size[0]], device=coords.device)
        return self.encode(coords.float() / scale)


def axial_rope(dim: int, width: int, height: int, theta: float = 10000.0) -> torch.Tensor:
    """2-D axial rotary frequencies (``compute_axial_cis``) for a row-major width x height grid.

    Returns:
        (width * height) x (dim / 2) complex64: the first dim/4 rotate by x, the rest by y.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(width * height, dtype=torch.float32)
    t_x = t % width
    t_y = torch.div(t, width, rounding_mode="floor")
    angles = torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor, repeat: int = 1) -> torch.Tensor:
    """Rotate B x heads x N x D features by N/repeat x D/2 frequencies (tiled ``repeat`` times
    along N, one copy per stacked memory frame)."""
    if x.shape[-2] == 0:
        return x
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    if repeat > 1:
        freqs = freqs.repeat(repeat, 1)
    return torch.view_as_real(pairs * freqs).flatten(3).type_as(x)
