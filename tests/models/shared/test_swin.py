"""2-D Swin (ReferFormer / MUTR ``swin_*_p4w7``): layout, per-frame outputs, fixed windows."""

from __future__ import annotations

import torch

from models.shared.swin import SWIN_SPECS, SwinBackbone
from models.shared.video_swin import relative_position_index


def _tiny() -> SwinBackbone:
    return SwinBackbone(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4)).eval()


def _official_2d_index(w: int) -> torch.Tensor:
    """Swin's 2-D relative-position index, restated from the official code."""
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    return rel[..., 0] * (2 * w - 1) + rel[..., 1]


def test_one_frame_window_index_is_swins_2d_index() -> None:
    assert torch.equal(relative_position_index((1, 7, 7)), _official_2d_index(7))


def test_official_key_layout() -> None:
    net = SwinBackbone.from_spec("large")
    keys = net.state_dict()
    assert keys["patch_embed.proj.weight"].shape == (192, 3, 4, 4)
    assert keys["layers.0.blocks.1.attn.relative_position_bias_table"].shape == (169, 6)
    assert keys["layers.2.downsample.reduction.weight"].shape == (1536, 3072)
    assert "layers.3.downsample.reduction.weight" not in keys
    assert [tuple(keys[f"norm{i}.weight"].shape) for i in range(4)] == [
        (192,),
        (384,),
        (768,),
        (1536,),
    ]
    assert set(SWIN_SPECS) == {"tiny", "small", "base", "large"}


def test_frames_are_independent_and_levels_normed() -> None:
    torch.manual_seed(0)
    net = _tiny()
    video = torch.randn(1, 3, 3, 45, 61)
    with torch.no_grad():
        levels = net(video)
        alone = net(video[:, 1:2])
    assert [tuple(x.shape) for x in levels] == [
        (3, 8, 12, 16),
        (3, 16, 6, 8),
        (3, 32, 3, 4),
        (3, 64, 2, 2),
    ]
    for x, y in zip(levels, alone, strict=True):
        torch.testing.assert_close(x[1:2], y, atol=1e-5, rtol=1e-5)
    # each level went through its LayerNorm (zero mean over channels at every position)
    torch.testing.assert_close(levels[3].mean(1), torch.zeros(3, 2, 2), atol=1e-5, rtol=0)


def test_small_maps_keep_the_fixed_window_and_shift() -> None:
    """A 5 x 5 map is padded to 7 x 7 and odd blocks still shift (Video Swin would not)."""
    torch.manual_seed(0)
    stage = _tiny().layers[3]
    x = torch.randn(1, 1, 5, 5, 64)
    with torch.no_grad():
        ours = stage(x)
        b0, b1 = stage.blocks
        plain = b1(b0(x, (1, 7, 7), (0, 0, 0), None), (1, 7, 7), (0, 0, 0), None)
    assert not torch.allclose(ours, plain, atol=1e-4)
