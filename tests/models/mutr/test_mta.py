"""MUTR's multi-scale temporal aggregation: checkpoint layout and behaviour."""

from __future__ import annotations

import torch

from models.mutr.mta import MultiScaleTextAggregator
from tests.models.conftest import parity_case
from tests.models.family_helpers import manifest_shapes


def test_layout_matches_official_mta() -> None:
    official = manifest_shapes(parity_case("mutr_vswint"), "MTA.")
    ours = {k: tuple(v.shape) for k, v in MultiScaleTextAggregator().state_dict().items()}
    assert ours == official


def test_levels_applied_in_order_and_padding_ignored() -> None:
    torch.manual_seed(0)
    mta = MultiScaleTextAggregator(d_model=16, nhead=2, dim_feedforward=32).eval()
    words, pos = torch.randn(1, 4, 16), torch.randn(1, 4, 16)
    levels = [torch.randn(1, 12, 16), torch.randn(1, 6, 16)]
    with torch.no_grad():
        out = mta(words, pos, levels)
        swapped = mta(words, pos, levels[::-1])
        layer = mta.layers[0]
        by_hand = layer(layer(words, pos, levels[0]), pos, levels[1])
        padded = [torch.cat([levels[0], 50 * torch.ones(1, 3, 16)], 1), levels[1]]
        mask = torch.zeros(1, 15, dtype=torch.bool)
        mask[:, 12:] = True
        with_pad = mta(words, pos, padded, [mask, None])
    torch.testing.assert_close(out, by_hand)
    assert not torch.allclose(out, swapped)
    torch.testing.assert_close(out, with_pad, atol=1e-5, rtol=1e-5)
