"""Text encoder, feature resizer, sine positions, input projections, fusion, small layers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.common.fusion import VisionLanguageFusion
from models.common.layers import MLP, build_input_projections, inverse_sigmoid, pad_frames
from models.common.position_encoding import sine_position_1d, sine_position_2d
from models.common.text_encoder import POSITION_IDS_SKIP, FeatureResizer, RobertaTextEncoder
from models.shared.checkpoint import convert_state_dict
from tests.models.conftest import case_arrays, official_substate, parity_case


def _tiny_roberta(**kwargs: object) -> RobertaTextEncoder:
    return RobertaTextEncoder(
        vocab_size=40,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=64,
        max_position_embeddings=24,
        **kwargs,  # type: ignore[arg-type]
    )


def test_padding_a_batch_does_not_change_an_expression() -> None:
    torch.manual_seed(0)
    enc = _tiny_roberta().eval()
    short = torch.tensor([[0, 7, 8, 2]])
    longer = torch.tensor([[0, 9, 10, 11, 12, 2]])
    batch = torch.tensor([[0, 7, 8, 2, 1, 1], [0, 9, 10, 11, 12, 2]])
    mask = batch.ne(1).long()
    both = enc(batch, mask)
    alone = enc(short, torch.ones_like(short))
    torch.testing.assert_close(both.words[0, :4], alone.words[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both.sentence[0], alone.sentence[0], atol=1e-5, rtol=1e-5)
    assert both.pad_mask.tolist()[0] == [False] * 4 + [True] * 2
    assert enc(longer, torch.ones_like(longer)).words.shape == (1, 6, 32)


def test_frozen_encoder_has_no_gradients_and_stays_in_eval() -> None:
    enc = _tiny_roberta(frozen=True)
    enc.train()
    assert not enc.model.training
    assert not any(p.requires_grad for p in enc.parameters())
    trainable = _tiny_roberta(frozen=False).train()
    assert trainable.model.training
    ids = torch.tensor([[0, 5, 2]])
    trainable(ids, torch.ones_like(ids)).sentence.sum().backward()
    assert trainable.model.embeddings.word_embeddings.weight.grad is not None


def test_mean_sentence_pooling() -> None:
    torch.manual_seed(0)
    enc = _tiny_roberta(sentence_pooling="mean").eval()
    assert enc.model.pooler is None
    ids = torch.tensor([[0, 5, 6, 2, 1], [0, 7, 2, 1, 1]])
    feats = enc(ids, ids.ne(1).long())
    torch.testing.assert_close(feats.sentence[0], feats.words[0, :4].mean(0))
    torch.testing.assert_close(feats.sentence[1], feats.words[1, :3].mean(0))
    with pytest.raises(ValueError, match="sentence_pooling"):
        _tiny_roberta(sentence_pooling="cls")


def test_bad_text_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="B x L"):
        _tiny_roberta()(torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long))


def test_position_ids_key_is_skipped() -> None:
    official = {"text_encoder.embeddings.position_ids": torch.arange(5)[None], "a": torch.ones(1)}
    state, skipped = convert_state_dict(official, skip=[POSITION_IDS_SKIP])
    assert list(state) == ["a"] and list(skipped) == ["text_encoder.embeddings.position_ids"]


def test_roberta_and_projections_match_sgmg_taps() -> None:
    case = parity_case("sgmg_vswint")
    inputs, expected = case_arrays(case, "inputs"), case_arrays(case, "expected")
    enc = RobertaTextEncoder().eval()
    state, _ = convert_state_dict(
        official_substate(case, "text_encoder.text_backbone."), skip=[POSITION_IDS_SKIP]
    )
    enc.model.load_state_dict(state, strict=True)
    text_proj, sentence_proj = FeatureResizer(768, 256).eval(), FeatureResizer(768, 256).eval()
    text_proj.load_state_dict(official_substate(case, "text_proj."), strict=True)
    sentence_proj.load_state_dict(official_substate(case, "sentence_proj."), strict=True)
    ids = torch.from_numpy(inputs["input_ids"]).long()
    with torch.no_grad():
        feats = enc(ids, torch.from_numpy(inputs["attention_mask"]).long())
        words, sentence = text_proj(feats.words), sentence_proj(feats.sentence)
    tol = {"atol": 2e-4, "rtol": 1e-4}
    np.testing.assert_allclose(feats.words[0].numpy(), expected["text_word_raw"], **tol)
    np.testing.assert_allclose(feats.sentence[0].numpy(), expected["text_sentence_raw"], **tol)
    np.testing.assert_allclose(words[0].numpy(), expected["text_word_features"], **tol)
    np.testing.assert_allclose(sentence[0].numpy(), expected["text_sentence_features"], **tol)


def test_sine_2d_matches_the_formula() -> None:
    mask = torch.zeros(1, 3, 4, dtype=torch.bool)
    mask[:, :, 3] = True  # last column padded
    pos = sine_position_2d(mask, num_feats=4)
    assert pos.shape == (1, 8, 3, 4)
    y = (1 - 0.5) / (3 + 1e-6) * 2 * math.pi  # row 0
    x = (2 - 0.5) / (3 + 1e-6) * 2 * math.pi  # column 1 (3 real columns)
    dim_t = torch.tensor([1.0, 1.0, 10000**0.5, 10000**0.5])
    want_y = [
        math.sin(y / dim_t[0]),
        math.cos(y / dim_t[1]),
        math.sin(y / dim_t[2]),
        math.cos(y / dim_t[3]),
    ]
    want_x = [
        math.sin(x / dim_t[0]),
        math.cos(x / dim_t[1]),
        math.sin(x / dim_t[2]),
        math.cos(x / dim_t[3]),
    ]
    torch.testing.assert_close(pos[0, :4, 0, 1], torch.tensor(want_y))
    torch.testing.assert_close(pos[0, 4:, 0, 1], torch.tensor(want_x))


def test_sine_1d_divides_by_the_real_tokens() -> None:
    mask = torch.tensor([[False, False, True]])
    pos = sine_position_1d(mask, dim=2)
    x = 1 / (2 + 1e-6) * 2 * math.pi
    torch.testing.assert_close(pos[0, 0], torch.tensor([math.sin(x), math.cos(x)]))


def test_input_projections_layout() -> None:
    proj = build_input_projections([16, 32, 64], hidden_dim=32, extra_levels=2, groups=8)
    keys = set(proj.state_dict())
    assert {"0.0.weight", "0.1.weight", "3.0.weight", "4.0.weight"} <= keys
    assert proj[3][0].weight.shape == (32, 64, 3, 3) and proj[4][0].weight.shape == (32, 32, 3, 3)


@pytest.mark.parametrize("mode", ["multiply", "add"])
def test_fusion_modes(mode: str) -> None:
    torch.manual_seed(0)
    fusion = VisionLanguageFusion(16, 4, mode=mode).eval()  # type: ignore[arg-type]
    visual, words = torch.randn(10, 2, 16), torch.randn(3, 2, 16)
    pad = torch.tensor([[False, False, True], [False, False, False]])
    out = fusion(visual, words, pad, None)
    attn = fusion.attend(visual, words, pad, None)
    torch.testing.assert_close(out, visual * attn if mode == "multiply" else visual + attn)
    # a padded word has no influence
    words2 = words.clone()
    words2[2, 0] += 5.0
    torch.testing.assert_close(fusion(visual, words2, pad, None)[:, 0], out[:, 0])
    with pytest.raises(ValueError, match="fusion mode"):
        VisionLanguageFusion(16, 4, mode="concat")  # type: ignore[arg-type]


def test_mlp_inverse_sigmoid_and_padding() -> None:
    mlp = MLP(4, 8, 2, 3)
    assert [tuple(layer.weight.shape) for layer in mlp.layers] == [(8, 4), (8, 8), (2, 8)]
    x = torch.tensor([0.0, 0.5, 1.0, 1.5])
    torch.testing.assert_close(inverse_sigmoid(x)[1], torch.tensor(0.0))
    assert float(inverse_sigmoid(x)[3]) == pytest.approx(math.log(1 / 1e-5))
    padded, mask = pad_frames(torch.ones(2, 3, 5, 17), 16)
    assert padded.shape == (2, 3, 16, 32) and mask.shape == (2, 16, 32)
    assert not mask[:, :5, :17].any() and mask[:, 5:].all() and mask[:, :, 17:].all()
