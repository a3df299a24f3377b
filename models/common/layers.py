"""Small building blocks shared by the DETR-style RVOS models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (DETR's box / controller heads).

    Parameter names ``layers.{i}.{weight,bias}`` match the official checkpoints.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """... x input_dim -> ... x output_dim."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """log(x / (1 - x)) with x clamped to [0, 1] and both terms to at least ``eps``."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def pad_frames(frames: torch.Tensor, divisor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad frames at the bottom/right to multiples of ``divisor``.

    Args:
        frames: ... x C x H x W.

    Returns:
        (padded ... x C x Hp x Wp, mask ... x Hp x Wp bool, True on padded pixels).
    """
    H, W = frames.shape[-2:]
    Hp, Wp = -(-H // divisor) * divisor, -(-W // divisor) * divisor
    padded = F.pad(frames, (0, Wp - W, 0, Hp - H))
    mask = torch.ones((*frames.shape[:-3], Hp, Wp), dtype=torch.bool, device=frames.device)
    mask[..., :H, :W] = False
    return padded, mask


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of a padding mask: N x H x W bool -> N x h x w bool."""
    return F.interpolate(mask[None].float(), size=size).to(torch.bool)[0]


def build_input_projections(
    in_channels: Sequence[int], hidden_dim: int = 256, extra_levels: int = 1, groups: int = 32
) -> nn.ModuleList:
    """``input_proj``: 1x1 conv + GroupNorm per backbone level, then 3x3 stride-2 levels.

    The first extra level reads the last backbone level's raw features; later ones the previous
    extra level. Keys ``{i}.0`` (conv) and ``{i}.1`` (norm) match the official checkpoints.
    Initialised as Deformable DETR: Xavier-uniform conv weights, zero biases.
    """
    projections: list[nn.Module] = [
        nn.Sequential(nn.Conv2d(c, hidden_dim, kernel_size=1), nn.GroupNorm(groups, hidden_dim))
        for c in in_channels
    ]
    source = in_channels[-1]
    for _ in range(extra_levels):
        projections.append(
            nn.Sequential(
                nn.Conv2d(source, hidden_dim, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(groups, hidden_dim),
            )
        )
        source = hidden_dim
    for proj in projections:
        nn.init.xavier_uniform_(proj[0].weight, gain=1)
        nn.init.constant_(proj[0].bias, 0)
    return nn.ModuleList(projections)


def clip_tokens(maps: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Per-frame maps of whole clips as token sequences, in (t, h, w) order.

    Args:
        maps: (B * T) x C x h x w, frames of a clip consecutive.

    Returns:
        B x (T * h * w) x C.
    """
    N, C, h, w = maps.shape
    return (
        maps.view(N // num_frames, num_frames, C, h * w)
        .transpose(2, 3)
        .reshape(-1, num_frames * h * w, C)
    )


def clip_maps(tokens: torch.Tensor, num_frames: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`clip_tokens`: B x (T * h * w) x C -> (B * T) x C x h x w."""
    B, _, C = tokens.shape
    return (
        tokens.view(B, num_frames, h, w, C).permute(0, 1, 4, 2, 3).reshape(B * num_frames, C, h, w)
    )
