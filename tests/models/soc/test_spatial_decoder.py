"""SOC's FPN spatial decoder: checkpoint layout for both backbones, shapes."""

from __future__ import annotations

import pytest
import torch

from models.soc.spatial_decoder import FPNSpatialDecoder
from tests.models.conftest import parity_case
from tests.models.family_helpers import manifest_shapes


@pytest.mark.parametrize(("case", "c2"), [("soc_vswint", 96), ("soc_vswinb", 128)])
def test_layout_matches_official(case: str, c2: int) -> None:
    official = manifest_shapes(parity_case(case), "spatial_decoder.")
    ours = {
        k: tuple(v.shape) for k, v in FPNSpatialDecoder(256, [256, 256, c2]).state_dict().items()
    }
    assert ours == official


def test_shapes_odd_sizes() -> None:
    dec = FPNSpatialDecoder(32, [32, 32, 8], mask_kernels_dim=8, norm_groups=2).eval()
    top = torch.randn(2, 32, 3, 4)
    finer = [torch.randn(2, 32, 5, 7), torch.randn(2, 32, 10, 13), torch.randn(2, 8, 19, 26)]
    with torch.no_grad():
        out = dec(top, finer)
    assert out.shape == (2, 8, 19, 26)
    with pytest.raises(ValueError, match="finer"):
        dec(top, finer[:2])
