"""Deformable transformer: shapes and box refinement; the shared RVOS front end on ReferFormer.

The parity test runs the shared modules (Video Swin, RoBERTa, FeatureResizer, input projections,
multiplicative fusion, sine positions, encoder, decoder with box refinement) on ReferFormer's
official weights and checks its debugging taps: a second model beside SgMg's own parity case.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from models.common.deformable_transformer import DeformableTransformer, valid_ratios
from models.common.fusion import VisionLanguageFusion
from models.common.layers import MLP, build_input_projections, resize_mask
from models.common.position_encoding import sine_position_1d, sine_position_2d
from models.common.text_encoder import POSITION_IDS_SKIP, FeatureResizer, RobertaTextEncoder
from models.shared.checkpoint import convert_state_dict
from models.shared.video_swin import VideoSwinBackbone
from tests.models.conftest import case_arrays, official_substate, parity_case


def _small(**kwargs: object) -> DeformableTransformer:
    args = {
        "d_model": 32,
        "n_heads": 4,
        "num_encoder_layers": 2,
        "num_decoder_layers": 3,
        "dim_feedforward": 64,
        "num_feature_levels": 2,
        "enc_n_points": 2,
        "dec_n_points": 2,
    }
    args.update(kwargs)
    return DeformableTransformer(**args).eval()  # type: ignore[arg-type]


def _levels(n: int, sizes: list[tuple[int, int]], c: int = 32):
    srcs = [torch.randn(n, c, h, w) for h, w in sizes]
    masks = [torch.zeros(n, h, w, dtype=torch.bool) for h, w in sizes]
    pos = [sine_position_2d(m, c // 2) for m in masks]
    return srcs, masks, pos


def test_shapes_with_and_without_box_refinement() -> None:
    torch.manual_seed(0)
    model = _small()
    srcs, masks, pos = _levels(3, [(6, 8), (3, 4)])
    tgt, query = torch.randn(3, 5, 32), torch.randn(3, 5, 32)
    boxes = nn.ModuleList(MLP(32, 32, 4, 3) for _ in range(3))
    memory, out = model(srcs, masks, pos, tgt, query, boxes)
    assert memory.memory.shape == (3, 6 * 8 + 3 * 4, 32)
    assert [tuple(m.shape) for m in memory.levels()] == [(3, 32, 6, 8), (3, 32, 3, 4)]
    assert out.hs.shape == (3, 3, 5, 32) and out.references.shape == (3, 3, 5, 4)
    assert out.init_reference.shape == (3, 5, 2)
    assert ((out.references > 0) & (out.references < 1)).all()
    plain = model.decode(memory, tgt, query, None)
    assert plain.references.shape == (3, 3, 5, 2)
    torch.testing.assert_close(plain.references[-1], plain.init_reference)


def test_frames_are_independent() -> None:
    torch.manual_seed(0)
    model = _small()
    srcs, masks, pos = _levels(2, [(6, 8), (3, 4)])
    tgt, query = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    _, both = model(srcs, masks, pos, tgt, query)
    _, alone = model(
        [s[1:] for s in srcs], [m[1:] for m in masks], [p[1:] for p in pos], tgt[1:], query[1:]
    )
    torch.testing.assert_close(both.hs[:, 1:], alone.hs, atol=1e-5, rtol=1e-5)


def test_level_count_and_box_heads_are_checked() -> None:
    model = _small()
    srcs, masks, pos = _levels(1, [(4, 4)])
    with pytest.raises(ValueError, match="expected 2 levels"):
        model.encode(srcs, masks, pos)
    srcs, masks, pos = _levels(1, [(4, 4), (2, 2)])
    memory = model.encode(srcs, masks, pos)
    with pytest.raises(ValueError, match="box heads"):
        model.decode(memory, torch.randn(1, 5, 32), torch.randn(1, 5, 32), [MLP(32, 32, 4, 3)])


def test_valid_ratios() -> None:
    mask = torch.zeros(1, 4, 8, dtype=torch.bool)
    mask[:, 3:] = True
    mask[:, :, 6:] = True
    torch.testing.assert_close(valid_ratios(mask), torch.tensor([[0.75, 0.75]]))


def test_referformer_front_end_matches_official_taps() -> None:
    case = parity_case("referformer_vswint")
    inputs, expected = case_arrays(case, "inputs"), case_arrays(case, "expected")
    torch.set_num_threads(2)
    backbone = VideoSwinBackbone.from_spec("tiny").eval()
    backbone.load_state_dict(
        {
            k: v
            for k, v in official_substate(case, "backbone.0.body.").items()
            if not k.endswith("relative_position_index")
        }
    )
    text = RobertaTextEncoder().eval()
    text.model.load_state_dict(
        convert_state_dict(official_substate(case, "text_encoder."), skip=[POSITION_IDS_SKIP])[0]
    )
    resizer = FeatureResizer(768, 256).eval()
    resizer.load_state_dict(official_substate(case, "resizer."))
    proj = build_input_projections([192, 384, 768], 256, extra_levels=1).eval()
    proj.load_state_dict(official_substate(case, "input_proj."))
    fusion = VisionLanguageFusion(256, 8, "multiply").eval()
    fusion.load_state_dict(official_substate(case, "fusion_module."))
    transformer = DeformableTransformer().eval()
    state = official_substate(case, "transformer.")
    transformer.load_state_dict({k: v for k, v in state.items() if "bbox_embed" not in k})
    boxes = nn.ModuleList(MLP(256, 256, 4, 3) for _ in range(4)).eval()
    # bbox_embed.* are aliases of transformer.decoder.bbox_embed.* in the official file
    boxes.load_state_dict(official_substate(case, "transformer.decoder.bbox_embed."))
    query_embed = official_substate(case, "query_embed.")["weight"]

    frames = torch.from_numpy(inputs["frames"])
    T = frames.shape[0]
    ids = torch.from_numpy(inputs["input_ids"]).long()
    with torch.no_grad():
        feats = backbone(frames[None])
        words_raw = text(ids, torch.from_numpy(inputs["attention_mask"]).long())
        words = resizer(words_raw.words).transpose(0, 1)  # L x 1 x C
        sentence = resizer(words_raw.sentence)
        word_pos = sine_position_1d(words_raw.pad_mask, 256).transpose(0, 1)
        full_mask = torch.zeros(T, *frames.shape[-2:], dtype=torch.bool)
        srcs, masks, poses = [], [], []
        for level in range(4):
            x = proj[level](feats[level + 1] if level < 3 else feats[3])
            _, c, h, w = x.shape
            visual = x.permute(0, 2, 3, 1).reshape(1, T * h * w, c).transpose(0, 1)
            fused = fusion(visual, words, words_raw.pad_mask, word_pos)
            x = fused.transpose(0, 1).reshape(T, h, w, c).permute(0, 3, 1, 2)
            mask = resize_mask(full_mask, (h, w))
            srcs.append(x)
            masks.append(mask)
            poses.append(sine_position_2d(mask, 128))
        tgt = sentence[:, None].expand(T, 5, 256)
        memory, out = transformer(
            srcs, masks, poses, tgt, query_embed[None].expand(T, 5, 256), boxes
        )
    checks = {
        "text_word_features": (words[:, 0], 3e-5),
        "fused_src_l2": (srcs[2], 8e-5),
        "enc_memory_l2": (memory.levels()[2], 6e-5),
        "init_reference": (out.init_reference, 1e-5),
        "inter_references": (out.references, 1e-5),
        "decoder_hs": (out.hs, 3e-5),
    }
    for name, (actual, atol) in checks.items():
        np.testing.assert_allclose(
            actual.numpy(), expected[name], atol=atol, rtol=1e-4, err_msg=name
        )
