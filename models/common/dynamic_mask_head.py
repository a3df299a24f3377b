"""CondInst dynamic mask head: per-query 1x1 convolutions whose weights a controller predicts.

Every query-based RVOS model here segments by running, for each (frame, query), a small stack of
1x1 convs over the mask features concatenated with the relative coordinates of each pixel to the
query's reference point. The controller (an :class:`models.common.layers.MLP` owned by the model)
outputs all weights then all biases, layer by layer (``parse_dynamic_params`` of CondInst):
``[w_0, ..., w_{L-1}, b_0, ..., b_{L-1}]``, each weight row-major ``out x in``.

Switches cover the models:

===========  =========  ========  =====  =================  ================
model        features   hidden    out    coordinate stride  channel order
===========  =========  ========  =====  =================  ================
SgMg         256 @1/8   16, 2 l.  16     8                  features, coords
ReferFormer  256 @1/4   8, 3 l.   1      4                  features, coords
SOC          8 @1/4     8, 3 l.   1      4                  features, coords
UNINEXT      8 @1/8     8, 3 l.   1      (its own)          coords, features
===========  =========  ========  =====  =================  ================

Relative coordinates are in input pixels, not normalised: ``reference * (W, H) - (stride * j +
stride // 2, stride * i + stride // 2)``, x then y.

Naming: N = frames (x clips), Q = queries, C = channels, h x w = mask-feature size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pixel_locations(h: int, w: int, stride: int, device: torch.device) -> torch.Tensor:
    """Centres of an h x w grid of ``stride``-pixel cells: (h * w) x 2 float32 (x, y)."""
    ys = torch.arange(0, h * stride, stride, dtype=torch.float32, device=device)
    xs = torch.arange(0, w * stride, stride, dtype=torch.float32, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1) + stride // 2


class DynamicMaskHead(nn.Module):
    """Dynamic 1x1 conv stack (no parameters of its own).

    Args:
        in_channels: mask-feature channels (the coordinates come on top).
        channels: channels of the hidden dynamic layers.
        num_layers: dynamic layers (ReLU between them, none after the last).
        out_channels: channels of the last layer (1 for a mask; SgMg: 16 = a 4 x 4 patch).
        rel_coords: append the two relative-coordinate channels to the features.
        coords_first: coordinates before the features (UNINEXT) instead of after.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_layers: int,
        out_channels: int = 1,
        *,
        rel_coords: bool = True,
        coords_first: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("a dynamic mask head needs at least one layer")
        self.rel_coords = rel_coords
        self.coords_first = coords_first
        first_in = in_channels + (2 if rel_coords else 0)
        ins = [first_in] + [channels] * (num_layers - 1)
        outs = [channels] * (num_layers - 1) + [out_channels]
        self.layer_shapes = list(zip(outs, ins, strict=True))
        self.weight_nums = [o * i for o, i in self.layer_shapes]
        self.bias_nums = list(outs)

    @property
    def num_params(self) -> int:
        """Controller output size: all weights and biases."""
        return sum(self.weight_nums) + sum(self.bias_nums)

    def split_params(self, params: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """... x P -> (weights ... x out x in per layer, biases ... x out per layer)."""
        if params.shape[-1] != self.num_params:
            raise ValueError(
                f"expected {self.num_params} dynamic parameters, got {params.shape[-1]}"
            )
        parts = params.split(self.weight_nums + self.bias_nums, dim=-1)
        n = len(self.layer_shapes)
        lead = params.shape[:-1]
        weights = [
            p.reshape(*lead, o, i) for p, (o, i) in zip(parts[:n], self.layer_shapes, strict=True)
        ]
        return weights, list(parts[n:])

    def forward(
        self,
        features: torch.Tensor,
        params: torch.Tensor,
        reference_points: torch.Tensor | None,
        stride: int,
    ) -> torch.Tensor:
        """Run every query's dynamic convs over its frame's features.

        Args:
            features: N x C x h x w mask features (shared by the queries of a frame).
            params: N x Q x P controller outputs.
            reference_points: N x Q x 2 reference points (x, y) in input pixels; required with
                ``rel_coords``.
            stride: input pixels per mask-feature cell.

        Returns:
            N x Q x out_channels x h x w logits.
        """
        N, C, h, w = features.shape
        weights, biases = self.split_params(params)
        flat = features.flatten(2)  # N x C x hw
        w0 = weights[0]
        if self.rel_coords:
            if reference_points is None:
                raise ValueError("relative coordinates need reference points")
            locations = pixel_locations(h, w, stride, features.device)  # hw x 2
            rel = reference_points[:, :, :, None] - locations.t()[None, None]  # N x Q x 2 x hw
            w_coord, w_feat = (
                (w0[..., :2], w0[..., 2:]) if self.coords_first else (w0[..., C:], w0[..., :C])
            )
            x = torch.einsum("nqoc,nck->nqok", w_feat, flat) + torch.einsum(
                "nqoc,nqck->nqok", w_coord, rel
            )
        else:
            x = torch.einsum("nqoc,nck->nqok", w0, flat)
        x = x + biases[0][..., None]
        for weight, bias in zip(weights[1:], biases[1:], strict=True):
            x = torch.einsum("nqoc,nqck->nqok", weight, F.relu(x)) + bias[..., None]
        return x.reshape(N, params.shape[1], -1, h, w)
