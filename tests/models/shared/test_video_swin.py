"""Video Swin backbone: shapes, window quirks, Kinetics conversion, parity tap on ReferFormer."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from models.shared.video_swin import (
    PatchMerging,
    VideoSwinBackbone,
    check_relative_position_index,
    convert_kinetics_state,
    effective_window,
    relative_position_index,
    shifted_window_mask,
)
from tests.models.conftest import case_arrays, official_substate, parity_case


def _tiny(**kwargs: object) -> VideoSwinBackbone:
    return VideoSwinBackbone(
        embed_dim=8,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        **kwargs,  # type: ignore[arg-type]
    ).eval()


def _official_style_mask(padded, window, shift) -> torch.Tensor:
    """The mask the official code builds by slicing (re-derived here as the oracle)."""
    img = torch.zeros(padded)
    cnt = 0
    for d in (slice(-window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for h in (slice(-window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            for w in (slice(-window[2]), slice(-window[2], -shift[2]), slice(-shift[2], None)):
                img[d, h, w] = cnt
                cnt += 1
    D, H, W = padded
    wd, wh, ww = window
    win = img.view(D // wd, wd, H // wh, wh, W // ww, ww).permute(0, 2, 4, 1, 3, 5)
    win = win.reshape(-1, wd * wh * ww)
    diff = win[:, None, :] - win[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


@pytest.mark.parametrize(
    ("padded", "window", "shift"),
    [
        ((8, 14, 14), (8, 7, 7), (0, 3, 3)),
        ((16, 14, 21), (8, 7, 7), (4, 3, 3)),
        ((3, 6, 7), (3, 3, 7), (0, 1, 0)),
    ],
)
def test_shift_mask_matches_official_slicing(padded, window, shift) -> None:
    ours = shifted_window_mask(padded, window, shift, torch.device("cpu"))
    assert ours is not None
    assert torch.equal(ours, _official_style_mask(padded, window, shift))


def test_shift_mask_is_not_kept_after_use() -> None:
    """Regression (peak memory): the nW x N x N masks were cached per padded size, and every
    video length is a new size, so the process kept one mask per (video, stage) alive (270 MB
    for a 40-frame stage at 56 x 77); a mask now lives only as long as its stage uses it."""
    mask = shifted_window_mask((16, 14, 21), (8, 7, 7), (4, 3, 3), torch.device("cpu"))
    assert mask is not None
    again = shifted_window_mask((16, 14, 21), (8, 7, 7), (4, 3, 3), torch.device("cpu"))
    assert again is not mask and torch.equal(again, mask)
    alive = weakref.ref(mask)
    del mask, again
    gc.collect()
    assert alive() is None


def test_window_shrinks_and_loses_its_shift() -> None:
    assert effective_window((2, 9, 7), (8, 7, 7), (4, 3, 3)) == ((2, 7, 7), (0, 3, 0))
    assert shifted_window_mask((2, 7, 7), (2, 7, 7), (0, 0, 0), torch.device("cpu")) is None


def test_relative_position_index_range() -> None:
    index = relative_position_index((8, 7, 7))
    assert index.shape == (392, 392)
    assert int(index.min()) == 0 and int(index.max()) == 15 * 13 * 13 - 1
    assert int(index[0, 0]) == int(index[5, 5])  # zero offset maps to one entry


def test_patch_merging_order() -> None:
    merge = PatchMerging(1)
    with torch.no_grad():
        merge.norm.weight.fill_(1.0)
        merge.norm.bias.zero_()
    x = torch.arange(9.0).view(1, 1, 3, 3, 1)  # odd size: padded to 4 x 4
    seen = {}
    merge.reduction.register_forward_hook(lambda m, i, o: seen.setdefault("in", i[0]))
    merge.norm = torch.nn.Identity()
    merge(x)
    # (even, even), (odd, even), (even, odd), (odd, odd) of the top-left 2 x 2 block
    assert seen["in"][0, 0, 0, 0].tolist() == [0.0, 3.0, 1.0, 4.0]
    assert seen["in"].shape == (1, 1, 2, 2, 4)


@pytest.mark.parametrize("frames", [1, 3, 10])
def test_per_frame_outputs_and_strides(frames: int) -> None:
    model = _tiny()
    video = torch.randn(2, frames, 3, 70, 45)
    with torch.no_grad():
        outs = model(video)
    assert model.out_channels == [8, 16, 32, 64] and model.strides == [4, 8, 16, 32]
    sizes = [(18, 12), (9, 6), (5, 3), (3, 2)]
    for out, c, (h, w) in zip(outs, model.out_channels, sizes, strict=True):
        assert out.shape == (2 * frames, c, h, w)
    assert all(torch.isfinite(o).all() for o in outs)


def test_videos_in_a_batch_do_not_mix() -> None:
    model = _tiny()
    a, b = torch.randn(1, 9, 3, 32, 32), torch.randn(1, 9, 3, 32, 32)
    with torch.no_grad():
        both = model(torch.cat([a, b]))
        alone = model(b)
    torch.testing.assert_close(both[2][9:], alone[2], atol=1e-5, rtol=1e-5)


def test_frames_interact_through_temporal_windows() -> None:
    model = _tiny()
    video = torch.randn(1, 4, 3, 32, 32)
    changed = video.clone()
    changed[0, 3] += 1.0
    with torch.no_grad():
        a, b = model(video)[0], model(changed)[0]
    assert not torch.allclose(a[0], b[0])  # frame 0 sees frame 3 (same temporal window)


def test_three_levels_drop_the_last_stage() -> None:
    model = VideoSwinBackbone(
        embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), num_levels=3
    )
    assert len(model.layers) == 3 and len(model.downsamples) == 2
    assert not any(k.startswith("layers.3") for k in model.state_dict())


def test_kinetics_conversion_sums_time_and_moves_merging() -> None:
    model = _tiny()
    own = model.state_dict()
    official = {}
    for key, value in own.items():
        if key.startswith("downsamples."):
            _, i, *rest = key.split(".")
            key = ".".join(["layers", i, "downsample", *rest])
        official["backbone." + key] = value.clone()
    official["backbone.patch_embed.proj.weight"] = torch.randn(8, 3, 2, 4, 4)
    official["backbone.norm.weight"] = torch.ones(64)
    official["backbone.layers.0.blocks.0.attn.relative_position_index"] = relative_position_index(
        (8, 7, 7)
    )
    official["cls_head.fc_cls.weight"] = torch.zeros(400, 64)
    converted = convert_kinetics_state(official)
    model.load_state_dict(converted, strict=True)
    torch.testing.assert_close(
        converted["patch_embed.proj.weight"],
        official["backbone.patch_embed.proj.weight"].sum(2, keepdim=True),
    )


def test_bad_relative_position_index_is_refused() -> None:
    good = {"x.attn.relative_position_index": relative_position_index((8, 7, 7))}
    assert check_relative_position_index(good, "x.") == ["x.attn.relative_position_index"]
    bad = {"x.attn.relative_position_index": relative_position_index((8, 7, 7)).flip(0)}
    with pytest.raises(ValueError, match="does not match"):
        check_relative_position_index(bad, "x.")


def test_parity_tap_referformer_stage4() -> None:
    """ReferFormer's Video-Swin-T stage-4 output (``backbone_c5_c64``) from official weights."""
    case = parity_case("referformer_vswint")
    state = official_substate(case, "backbone.0.body.")
    check_relative_position_index(state, "")
    state = {k: v for k, v in state.items() if not k.endswith("relative_position_index")}
    model = VideoSwinBackbone.from_spec("tiny").eval()
    model.load_state_dict(state, strict=True)
    frames = torch.from_numpy(case_arrays(case, "inputs")["frames"])
    with torch.no_grad():
        c5 = model(frames[None])[3][:, :64].numpy()
    expected = case_arrays(case, "expected")["backbone_c5_c64"]
    np.testing.assert_allclose(c5, expected, atol=5e-5, rtol=1e-4)
