"""The family producer: protocols, shapes at the original size, clips, expression batching."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from models.common.producer import Producer, TokenizedText
from models.common.rvos_inference import logits_to_size, prepare_frames, select_query
from models.family.producer import FamilyProducer, Protocol, protocol_for
from tests.models.family_helpers import build_family, tiny_family_config


def _text() -> TokenizedText:
    ids = torch.tensor([[0, 5, 6, 2, 1], [0, 7, 8, 9, 2], [0, 11, 2, 1, 1]])
    return TokenizedText(ids, (ids != 1).long())


def _frames(T: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (T, 3, 30, 50), dtype=torch.uint8, generator=g)


def test_official_protocols() -> None:
    assert protocol_for("referformer") == Protocol(360)
    assert protocol_for("mutr").short_side == 432
    assert protocol_for("mutr", short_side=360).short_side == 360  # the winners' setting
    assert protocol_for("soc") == Protocol(360, 640)
    assert protocol_for("soc", "ref-davis17").clip_length == 36
    assert protocol_for("mutr", "ref-davis17").clip_length == 64
    assert protocol_for("referformer", "mevis").clip_length is None
    with pytest.raises(ValueError, match="options"):
        protocol_for("soc", shortside=3)


@pytest.mark.parametrize("model", ["referformer", "mutr", "soc"])
def test_results_at_original_size_and_equal_to_the_manual_protocol(model: str) -> None:
    torch.manual_seed(0)
    net = build_family(tiny_family_config(model)).eval()
    producer = FamilyProducer(net, Protocol(40, expression_batch=2))
    assert isinstance(producer, Producer)
    frames, text = _frames(), _text()
    results = list(producer.segment_video(frames, text))
    assert [r.index for r in results] == [0, 1, 2]
    assert producer.encoded_clips == 1  # one backbone pass for all expressions
    for r in results:
        assert r.probs.shape == (5, 30, 50) and r.scores.shape == (5,)
        assert float(r.probs.min()) >= 0 and float(r.probs.max()) <= 1
    # expression 1 by hand
    one = text.select(1)
    with torch.no_grad():
        x = prepare_frames(frames, producer.network_size(30, 50))
        out = net.decode(
            net.encode_video(x[None]), net.encode_text(one.input_ids, one.attention_mask)
        )
    chosen = select_query(out.pred_logits[0, 0])
    manual = logits_to_size(out.pred_masks[0, 0, :, chosen.index], (30, 50)).sigmoid()
    torch.testing.assert_close(results[1].probs, manual, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(results[1].scores, chosen.frame_scores, atol=1e-5, rtol=1e-4)


def test_clips_choose_their_own_query_and_groups_reencode() -> None:
    torch.manual_seed(0)
    net = build_family(tiny_family_config("referformer")).eval()
    frames, text = _frames(T=7), _text()
    whole = FamilyProducer(net, Protocol(40, expression_batch=1))
    clipped = FamilyProducer(net, replace(Protocol(40, clip_length=3), expression_batch=2))
    a = list(whole.segment_video(frames, text))
    b = list(clipped.segment_video(frames, text))
    assert whole.encoded_clips == 1
    assert clipped.encoded_clips == 3 * 2  # 3 clips, re-encoded for each of the 2 groups
    assert all(r.probs.shape == (7, 30, 50) for r in b)
    first = list(FamilyProducer(net, Protocol(40)).segment_video(frames[:3], text))
    for x, y in zip(b, first, strict=True):  # the first clip alone = the clip inside the video
        torch.testing.assert_close(x.probs[:3], y.probs, atol=1e-4, rtol=1e-4)
    assert a[0].probs.shape == b[0].probs.shape


def test_bad_frames_are_refused() -> None:
    net = build_family(tiny_family_config("soc")).eval()
    with pytest.raises(ValueError, match="uint8"):
        list(FamilyProducer(net, Protocol(40)).segment_video(torch.zeros(2, 3, 8, 8), _text()))
