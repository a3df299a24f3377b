"""Resize rule, preprocessing, query selection and clips of the query-based RVOS protocols."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.common.rvos_inference import (
    clip_bounds,
    logits_to_size,
    prepare_frames,
    resized_size,
    select_query,
)


@pytest.mark.parametrize(
    ("hw", "short", "max_size", "expected"),
    [
        ((720, 1280), 360, None, (360, 640)),  # ReferFormer / SOC on a 16:9 frame
        ((720, 1280), 432, None, (432, 768)),  # MUTR
        ((480, 854), 360, None, (360, 640)),  # int(360 * 854 / 480) = 640
        ((1280, 720), 360, None, (640, 360)),  # portrait
        ((360, 500), 360, None, (360, 500)),  # already there
        ((480, 1920), 360, 640, (160, 640)),  # SOC's max size shrinks the short side
        ((720, 1280), 360, 640, (360, 640)),  # exactly at the cap: unchanged
    ],
)
def test_resized_size(hw, short, max_size, expected) -> None:
    assert resized_size(*hw, short, max_size) == expected


def test_prepare_frames_close_to_pil_bilinear() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(img).resize((160, 90), Image.BOX))  # smooth-ish content
    pil = np.asarray(Image.fromarray(img).resize((64, 36), Image.BILINEAR)).astype(np.float32)
    ours = prepare_frames(torch.from_numpy(img.copy()).permute(2, 0, 1)[None], (36, 64))[0]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    back = ((ours * std + mean) * 255).permute(1, 2, 0).numpy()
    diff = np.abs(back - pil)
    assert diff.mean() < 0.6 and np.quantile(diff, 0.99) <= 2.01


def test_prepare_frames_rejects_float() -> None:
    with pytest.raises(ValueError, match="uint8"):
        prepare_frames(torch.zeros(1, 3, 4, 4), (4, 4))


def test_select_query_first_on_ties_and_frame_scores() -> None:
    logits = torch.tensor([[0.0, 2.0, 2.0], [0.0, -1.0, -1.0]])
    sel = select_query(logits)
    assert sel.index == 1
    torch.testing.assert_close(sel.frame_scores, torch.sigmoid(torch.tensor([2.0, -1.0])))
    torch.testing.assert_close(sel.mean_scores, torch.sigmoid(logits).mean(0))


def test_logits_to_size_and_clips() -> None:
    x = torch.randn(2, 8, 10)
    assert logits_to_size(x, (31, 41)).shape == (2, 31, 41)
    assert clip_bounds(80, 36) == [(0, 36), (36, 72), (72, 80)]
    assert clip_bounds(5, None) == [(0, 5)]
    assert clip_bounds(5, 64) == [(0, 5)]
