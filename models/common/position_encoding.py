"""Sine position encodings: 2-D for feature maps (DETR), 1-D for words (the RVOS models).

Both are functions of the padding mask only (no parameters), computed in float32.
"""

from __future__ import annotations

import math

import torch


def _frequencies(num_feats: int, temperature: float, device: torch.device) -> torch.Tensor:
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)


def _interleave_sin_cos(pos: torch.Tensor) -> torch.Tensor:
    """... x F -> ... x F with sin on even and cos on odd channels, interleaved."""
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_position_2d(
    mask: torch.Tensor,
    num_feats: int = 128,
    temperature: float = 10000.0,
    normalize: bool = True,
    scale: float = 2 * math.pi,
) -> torch.Tensor:
    """DETR's 2-D sine embedding of the non-padded area.

    With ``normalize``: ``(cumsum - 0.5) / (last + 1e-6) * scale`` per axis.

    Args:
        mask: N x H x W bool, True on padding.

    Returns:
        N x (2 * num_feats) x H x W float32, the y channels first.
    """
    not_mask = ~mask
    y = not_mask.cumsum(1, dtype=torch.float32)
    x = not_mask.cumsum(2, dtype=torch.float32)
    if normalize:
        eps = 1e-6
        y = (y - 0.5) / (y[:, -1:, :] + eps) * scale
        x = (x - 0.5) / (x[:, :, -1:] + eps) * scale
    dim_t = _frequencies(num_feats, temperature, mask.device)
    pos_x = _interleave_sin_cos(x[..., None] / dim_t)
    pos_y = _interleave_sin_cos(y[..., None] / dim_t)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def sine_position_1d(
    mask: torch.Tensor,
    dim: int = 256,
    temperature: float = 10000.0,
    normalize: bool = True,
    scale: float = 2 * math.pi,
) -> torch.Tensor:
    """The words' 1-D sine embedding: ``cumsum / (last + 1e-6) * scale`` (no -0.5 offset).

    Args:
        mask: B x L bool, True on padding (pads at the end).

    Returns:
        B x L x dim float32.
    """
    pos = (~mask).cumsum(1, dtype=torch.float32)
    if normalize:
        pos = pos / (pos[:, -1:] + 1e-6) * scale
    return _interleave_sin_cos(pos[..., None] / _frequencies(dim, temperature, mask.device))
