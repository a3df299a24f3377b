"""Dynamic mask head against CondInst's grouped-convolution formulation (the official one)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.common.dynamic_mask_head import DynamicMaskHead, pixel_locations


def _grouped_conv_oracle(head, features, params, reference, stride):
    """Official style: concatenate coordinates, split params, grouped conv with groups = N * Q."""
    N, C, h, w = features.shape
    Q = params.shape[1]
    loc = pixel_locations(h, w, stride, features.device).view(h, w, 2)
    rel = (reference[:, :, None, None, :] - loc[None, None]).permute(0, 1, 4, 2, 3)  # N Q 2 h w
    feats = features[:, None].expand(N, Q, C, h, w)
    x = torch.cat([rel, feats] if head.coords_first else [feats, rel], dim=2)
    x = x.reshape(1, -1, h, w)
    flat = params.reshape(N * Q, -1)
    splits = list(torch.split(flat, head.weight_nums + head.bias_nums, dim=1))
    n = len(head.weight_nums)
    for i in range(n):
        out_c = head.layer_shapes[i][0]
        weight = splits[i].reshape(N * Q * out_c, -1, 1, 1)
        bias = splits[n + i].reshape(N * Q * out_c)
        x = F.conv2d(x, weight, bias, groups=N * Q)
        if i < n - 1:
            x = F.relu(x)
    return x.reshape(N, Q, -1, h, w)


@pytest.mark.parametrize(
    ("channels", "layers", "out", "stride", "coords_first"),
    [(16, 2, 16, 8, False), (8, 3, 1, 4, False), (8, 3, 1, 8, True)],
)
def test_matches_grouped_convolution(channels, layers, out, stride, coords_first) -> None:
    torch.manual_seed(0)
    head = DynamicMaskHead(12, channels, layers, out, coords_first=coords_first)
    features = torch.randn(3, 12, 5, 7)
    params = torch.randn(3, 4, head.num_params)
    reference = torch.rand(3, 4, 2) * torch.tensor([7 * stride, 5 * stride])
    ours = head(features, params, reference, stride)
    want = _grouped_conv_oracle(head, features, params, reference, stride)
    assert ours.shape == (3, 4, out, 5, 7)
    torch.testing.assert_close(ours, want, atol=1e-4, rtol=1e-4)


def test_parameter_counts_of_the_models() -> None:
    assert DynamicMaskHead(256, 16, 2, 16).num_params == 4416  # SgMg
    assert DynamicMaskHead(256, 8, 3, 1).num_params == 2153  # ReferFormer, MUTR
    assert DynamicMaskHead(8, 8, 3, 1).num_params == 169  # SOC


def test_locations_are_cell_centres() -> None:
    loc = pixel_locations(2, 3, 8, torch.device("cpu"))
    assert loc[:4].tolist() == [[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [4.0, 12.0]]


def test_without_coordinates_and_errors() -> None:
    head = DynamicMaskHead(4, 4, 2, 1, rel_coords=False)
    assert head.num_params == 4 * 4 + 4 * 1 + 4 + 1
    out = head(torch.randn(1, 4, 3, 3), torch.randn(1, 2, head.num_params), None, 4)
    assert out.shape == (1, 2, 1, 3, 3)
    with pytest.raises(ValueError, match="dynamic parameters"):
        head(torch.randn(1, 4, 3, 3), torch.randn(1, 2, 7), None, 4)
    with pytest.raises(ValueError, match="reference points"):
        with_coords = DynamicMaskHead(4, 4, 2)
        with_coords(torch.randn(1, 4, 3, 3), torch.randn(1, 2, with_coords.num_params), None, 4)
