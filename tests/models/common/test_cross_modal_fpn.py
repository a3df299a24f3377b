"""ReferFormer/MUTR cross-modal FPN: checkpoint layout, shapes, clip-wide attention."""

from __future__ import annotations

import torch

from models.common.cross_modal_fpn import CrossModalFPNDecoder
from tests.models.conftest import parity_case
from tests.models.family_helpers import manifest_shapes


def _tiny(channels: tuple[int, ...] = (8, 16, 16, 16)) -> CrossModalFPNDecoder:
    return CrossModalFPNDecoder(
        channels, conv_dim=16, mask_dim=12, dim_feedforward=32, nhead=2, norm_groups=4
    ).eval()


def test_layout_matches_official_pixel_decoder() -> None:
    for name, c2 in (("referformer_vswint", 96), ("mutr_vswinb", 128)):
        official = manifest_shapes(parity_case(name), "pixel_decoder.")
        fpn = CrossModalFPNDecoder((c2, 256, 256, 256))
        ours = {k: tuple(v.shape) for k, v in fpn.state_dict().items()}
        assert ours == official


def _inputs(T: int = 3, B: int = 1) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    sizes = [(16, 20), (8, 10), (4, 5), (2, 3)]
    chans = [8, 16, 16, 16]
    levels = [torch.randn(B * T, c, h, w) for c, (h, w) in zip(chans, sizes, strict=True)]
    pos = [torch.randn(B * T, 16, h, w) for h, w in sizes]
    words = torch.randn(B, 5, 16)
    return levels, pos, words


def test_output_shape_and_frames_see_each_other() -> None:
    fpn = _tiny()
    levels, pos, words = _inputs()
    word_pos = torch.randn_like(words)
    with torch.no_grad():
        out = fpn(levels, pos, words, word_pos, num_frames=3)
        assert out.shape == (3, 12, 16, 20)
        changed = [x.clone() for x in levels]
        changed[0][2] += 1.0  # only the last frame's stride-4 map
        out2 = fpn(changed, pos, words, word_pos, num_frames=3)
        alone = fpn([x[:1] for x in levels], [p[:1] for p in pos], words, word_pos, num_frames=1)
    assert not torch.allclose(out[0], out2[0])  # frame 0 attends to frame 2 (whole clip)
    assert not torch.allclose(out[0], alone[0])


def test_word_padding_is_ignored() -> None:
    fpn = _tiny()
    levels, pos, words = _inputs()
    word_pos = torch.randn_like(words)
    pad = torch.tensor([[False, False, False, True, True]])
    noisy = words.clone()
    noisy[:, 3:] = 100.0
    with torch.no_grad():
        a = fpn(levels, pos, words, word_pos, num_frames=3, word_pad_mask=pad)
        b = fpn(levels, pos, noisy, word_pos, num_frames=3, word_pad_mask=pad)
        c = fpn(levels, pos, words[:, :3], word_pos[:, :3], num_frames=3)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
