"""UNINEXT's test-time protocol and its producer (tiny random model)."""

from __future__ import annotations

import pytest
import torch

from models.common.producer import Producer, TokenizedText
from models.uninext.model import build_uninext
from models.uninext.postprocess import (
    network_size,
    probabilities_at_original_size,
    resize_frames,
)
from models.uninext.producer import UninextProducer
from models.uninext.spec import UNINEXT_TINY


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((720, 1280), (480, 853)),  # shortest edge 480, 853.33 rounds down
        ((1280, 720), (853, 480)),
        ((480, 640), (480, 640)),
        ((300, 1200), (333, 1333)),  # the long side caps at 1333: 1920 -> 1333
        ((360, 641), (480, 855)),  # 854.67 rounds half up
    ],
)
def test_network_size_is_resize_shortest_edge(hw, expected) -> None:
    assert network_size(*hw, 480, 1333) == expected


def test_probabilities_crop_the_padding_before_the_nearest_resize() -> None:
    logits = torch.full((1, 6, 8), -10.0)  # stride 4 of a 24 x 32 padded input
    logits[:, :, 6:] = 10.0  # what lies right of the 22-pixel wide input must not leak in
    probs = probabilities_at_original_size(logits, (24, 22), (48, 44))
    assert probs.shape == (1, 48, 44)
    assert float(probs.max()) < 0.5
    logits[:, :, 4:] = 10.0  # inside the input: upsample -> sigmoid -> crop -> nearest x2
    probs = probabilities_at_original_size(logits, (24, 22), (48, 44))
    assert float(probs[0, :, -1].min()) > 0.99 and float(probs[0, :, 0].max()) < 0.01


def test_resize_frames_keeps_uint8_and_size() -> None:
    frames = torch.randint(0, 256, (2, 3, 30, 40), dtype=torch.uint8)
    out = resize_frames(frames, (15, 20))
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 15, 20)
    assert resize_frames(frames, (30, 40)) is frames


@pytest.fixture(scope="module")
def producer() -> UninextProducer:
    torch.manual_seed(0)
    return UninextProducer(build_uninext(UNINEXT_TINY))


def _video() -> tuple[torch.Tensor, TokenizedText]:
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (3, 3, 60, 84), dtype=torch.uint8, generator=g)
    ids = torch.tensor([[5, 9, 12, 1], [7, 8, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    return frames, TokenizedText(ids, mask)


def test_producer_outputs_probabilities_at_the_original_size(producer) -> None:
    assert isinstance(producer, Producer)
    frames, text = _video()
    results = list(producer.segment_video(frames, text))
    assert [r.index for r in results] == [0, 1]
    for r in results:
        assert r.probs.shape == (3, 60, 84) and r.probs.dtype == torch.float32
        assert float(r.probs.min()) >= 0 and float(r.probs.max()) <= 1
        assert r.scores.shape == (3,) and bool(((r.scores > 0) & (r.scores < 1)).all())
    # each frame's backbone ran once for both expressions
    assert producer.last_cache is not None and producer.last_cache.computed == 3


def test_producer_matches_the_per_frame_official_loop(producer) -> None:
    frames, text = _video()
    first = next(producer.segment_video(frames, text))
    model = producer.model
    size = network_size(60, 84, model.min_size, model.max_size)
    with torch.inference_mode():
        one = text.select(0)
        feats = model.encode_text(one.input_ids, one.attention_mask)
        preds = model.decode(model.encode_images(resize_frames(frames[1:2], size)), feats)
        best = int(preds.final.scores[0].argmax())
        logits = model.mask_logits(preds, torch.tensor([[best]]))[0, 0]
        probs = probabilities_at_original_size(logits, size, (60, 84))
    torch.testing.assert_close(first.probs[1], probs, atol=1e-5, rtol=0)
    assert float(first.scores[1]) == pytest.approx(float(preds.final.scores[0, best]), abs=1e-6)


def test_batching_and_cache_do_not_change_results(producer) -> None:
    frames, text = _video()
    reference = list(producer.segment_video(frames, text))
    batched = UninextProducer(producer.model, frame_batch=2, cache_bytes=0)
    results = list(batched.segment_video(frames, text))
    assert batched.last_cache is not None and batched.last_cache.computed == 4  # 2 x 2 batches
    for a, b in zip(reference, results, strict=True):
        torch.testing.assert_close(a.probs, b.probs, atol=1e-4, rtol=0)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)


def test_bad_frames_are_refused(producer) -> None:
    _, text = _video()
    with pytest.raises(ValueError, match="uint8"):
        next(producer.segment_video(torch.zeros(2, 3, 8, 8), text))
