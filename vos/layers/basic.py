"""Small layers shared by AOT and DeAOT (parameter names as in aot-benchmark
``networks/layers/basic.py`` and ``normalization.py``, which the checkpoints follow)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def tokens_to_map(x: torch.Tensor, size_2d: tuple[int, int]) -> torch.Tensor:
    """``B x (h*w) x C`` tokens -> ``B x C x h x w`` map (row-major tokens)."""
    h, w = size_2d
    b, _, c = x.shape
    return x.transpose(1, 2).reshape(b, c, h, w)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``B x C x h x w`` map -> ``B x (h*w) x C`` tokens."""
    return x.flatten(2).transpose(1, 2)


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters, all four stored as buffers.

    The official encoders use this (``MODEL_FREEZE_BN=True``): the checkpoint holds ``weight``,
    ``bias``, ``running_mean`` and ``running_var`` and no ``num_batches_tracked``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


class ConvGN(nn.Module):
    """Conv (same padding) + GroupNorm; parameters ``conv``, ``gn``."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, gn_groups: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size, padding=kernel_size // 2)
        self.gn = nn.GroupNorm(gn_groups, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gn(self.conv(x))


class TokenGroupNorm(nn.Module):
    """GroupNorm over the channels of ``B x L x C`` tokens (official ``GroupNorm1D``: ``gn``)."""

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.gn = nn.GroupNorm(groups, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gn(x.transpose(1, 2)).transpose(1, 2)


class DepthwiseConvTokens(nn.Module):
    """5x5 depthwise conv (no bias) on ``B x L x C`` tokens, then Dropout2d (official
    ``DWConv2d``: parameter ``conv``)."""

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, bias=False)
        self.dropout = nn.Dropout2d(p=dropout)

    def forward(self, x: torch.Tensor, size_2d: tuple[int, int]) -> torch.Tensor:
        y = self.dropout(self.conv(tokens_to_map(x, size_2d)))
        return map_to_tokens(y)


class GNActDWConv(nn.Module):
    """GroupNorm(32) -> GELU -> 5x5 depthwise conv on tokens: the LSTT feed-forward activation
    (official ``GNActDWConv2d``: ``gn``, ``conv``)."""

    def __init__(self, dim: int, gn_groups: int = 32) -> None:
        super().__init__()
        self.gn = nn.GroupNorm(gn_groups, dim)
        self.conv = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, bias=False)

    def forward(self, x: torch.Tensor, size_2d: tuple[int, int]) -> torch.Tensor:
        y = self.conv(F.gelu(self.gn(tokens_to_map(x, size_2d))))
        return map_to_tokens(y)


class DropPath(nn.Module):
    """Stochastic depth per sample (batch dim 0); the identity in eval mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep
