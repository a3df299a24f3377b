"""The UNINEXT network's stages on tiny configurations (random weights)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from models.uninext.backbones import build_backbone
from models.uninext.heads import aligned_bilinear
from models.uninext.model import build_uninext
from models.uninext.spec import UNINEXT_TINY, BackboneSpec


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_uninext(UNINEXT_TINY).eval()


def _text(ids: list[int], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    full = ids + [UNINEXT_TINY.text.pad_token_id] * pad
    mask = [1] * len(ids) + [0] * pad
    return torch.tensor([full]), torch.tensor([mask])


@torch.inference_mode()
def test_padded_tokens_change_nothing(tiny) -> None:
    frames = torch.randint(0, 256, (1, 3, 72, 96), dtype=torch.uint8)
    visual = tiny.encode_images(frames)
    short = tiny.decode(visual, tiny.encode_text(*_text([5, 9, 12])))
    padded = tiny.decode(visual, tiny.encode_text(*_text([5, 9, 12], pad=6)))
    torch.testing.assert_close(short.final.logits, padded.final.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short.final.boxes, padded.final.boxes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short.pooled_text, padded.pooled_text, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_rows_of_a_batch_are_independent(tiny) -> None:
    frames = torch.randint(0, 256, (2, 3, 72, 96), dtype=torch.uint8)
    text = tiny.encode_text(*_text([4, 7, 8, 20]))
    both = tiny.decode(tiny.encode_images(frames), text.repeat_for(0, 2))
    for i in range(2):
        alone = tiny.decode(tiny.encode_images(frames[i : i + 1]), text)
        torch.testing.assert_close(both.final.scores[i], alone.final.scores[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(both.mask_feats[i], alone.mask_feats[0], atol=1e-5, rtol=0)


@torch.inference_mode()
def test_selected_slot_masks_equal_the_full_computation(tiny) -> None:
    frames = torch.randint(0, 256, (1, 3, 64, 80), dtype=torch.uint8)
    preds = tiny.decode(tiny.encode_images(frames), tiny.encode_text(*_text([6, 3])))
    every = torch.arange(UNINEXT_TINY.num_queries)[None]
    all_masks = tiny.mask_logits(preds, every)
    chosen = torch.tensor([[7, 2]])
    torch.testing.assert_close(tiny.mask_logits(preds, chosen)[0], all_masks[0, [7, 2]])
    assert all_masks.shape[-2:] == (16, 20)  # stride 4 of the input


def test_aligned_bilinear_on_a_ramp() -> None:
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 3, 4)
    out = aligned_bilinear(ramp, 2)[0, 0, 1]
    # out[k] = input sampled at (k - 1) / 2, clamped to [0, 3]
    expected = torch.tensor([0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    torch.testing.assert_close(out, expected)


def test_backbone_strides_and_channels() -> None:
    specs = [
        BackboneSpec(kind="resnet", depth=18, stem_channels=8, res2_channels=8, norm="GN"),
        BackboneSpec(kind="resnet", depth=50, stem_channels=8, res2_channels=16),
        BackboneSpec(kind="convnext", depths=(1, 1, 2, 1), dims=(8, 16, 32, 64)),
        BackboneSpec(
            kind="vit", embed_dim=32, vit_depth=4, num_heads=2, window_size=3,
            window_blocks=(0, 1), pretrain_grid=4, rel_pos_grid=6,
        ),
    ]  # fmt: skip
    x = torch.randn(1, 3, 64, 96)
    for spec in specs:
        outs = build_backbone(spec)(x)
        assert [o.shape[1] for o in outs] == list(spec.out_channels), spec.kind
        assert [tuple(o.shape[-2:]) for o in outs] == [(8, 12), (4, 6), (2, 3)], spec.kind


def test_vit_one_window_covering_the_map_is_global_attention() -> None:
    """Windowed attention over one window equal to the map is global attention; with padding
    the windows also attend to the zero-padded tokens (as ViTDet does) and are cropped back."""
    spec = BackboneSpec(
        kind="vit", embed_dim=16, vit_depth=1, num_heads=2, window_size=5,
        window_blocks=(0,), pretrain_grid=2, rel_pos_grid=5,
    )  # fmt: skip
    torch.manual_seed(1)
    windowed = build_backbone(spec)
    global_spec = replace(spec, window_blocks=())
    full = build_backbone(global_spec)
    full.load_state_dict(windowed.state_dict())
    x = torch.randn(1, 3, 80, 80)  # 5 x 5 tokens: exactly one window
    torch.testing.assert_close(windowed(x)[1], full(x)[1], atol=1e-5, rtol=1e-5)
    padded = windowed(torch.randn(1, 3, 64, 112))[1]  # 4 x 7 tokens -> 2 windows, cropped
    assert padded.shape == (1, 16, 4, 7)


@torch.inference_mode()
def test_padded_backbones_mask_the_padding() -> None:
    spec = replace(
        UNINEXT_TINY,
        backbone=BackboneSpec(kind="convnext", depths=(1, 1, 1, 1), dims=(16, 16, 32, 64)),
    )
    model = build_uninext(spec).eval()
    visual = model.encode_images(torch.randint(0, 256, (1, 3, 70, 90), dtype=torch.uint8))
    assert tuple(visual.srcs[0].shape[-2:]) == (12, 12)  # 96 x 96 padded input, stride 8
    assert visual.masks[0][0, -1].all() and not visual.masks[0][0, 0, 0]
    assert visual.image_sizes.tolist() == [[70, 90]]
    preds = model.decode(visual, model.encode_text(*_text([5, 6])))
    ratios = preds.encoder.valid_ratios[0, 0]
    assert 0 < float(ratios.min()) < 1
