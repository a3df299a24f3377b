"""SgMg (tiny config): stage contracts, inference invariances, producer, training objective."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from models.common.producer import Producer, TokenizedText
from models.sgmg.build import SgMgConfig, build_sgmg, tiny_config
from models.sgmg.inference import predict_clip
from models.sgmg.model import pad_video
from models.sgmg.producer import SgMgProducer, SgMgProtocol
from models.sgmg.train import sgmg_loss
from models.shared.typed import from_dict
from models.train.batch import ClipBatch
from models.train.loop import OptimConfig, Trainer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sgmg(tiny_config(vocab_size=20)).eval()


def _text(rows: list[list[int]]) -> TokenizedText:
    L = max(len(r) for r in rows)
    ids = torch.ones(len(rows), L, dtype=torch.long)
    mask = torch.zeros(len(rows), L, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return TokenizedText(ids, mask)


TEXT = _text([[0, 5, 6, 2], [0, 7, 8, 9, 10, 2], [0, 11, 2]])


def test_config_round_trip() -> None:
    config = tiny_config(vocab_size=20)
    assert from_dict(SgMgConfig, asdict(config)) == config
    with pytest.raises(ValueError, match="unknown"):
        from_dict(SgMgConfig, {"bogus": 1})


def test_decode_shapes_and_broadcast(model) -> None:
    frames = torch.randn(1, 3, 3, 150, 170)
    padded = pad_video(frames)
    assert padded.shape[-2:] == (160, 176)
    with torch.no_grad():
        video = model.encode_video(padded, torch.tensor([[150, 170]]))
        text = model.encode_text(TEXT.input_ids, TEXT.attention_mask)
        out = model.decode(video, text, mask_layers=[0, 2])
    D, Q = model.num_decoder_layers, model.num_queries
    assert out.logits.shape == (D, 3 * 3, Q) and out.boxes.shape == (D, 9, Q, 4)
    assert sorted(out.patch_logits) == [0, 2]
    assert out.patch_logits[2].shape == (9, Q, 16, 20, 22)
    full = model.refine(
        out.patch_logits[2][:, 0],
        video.backbone[0][:1].expand(9, -1, -1, -1),
        video.backbone[1][:1].expand(9, -1, -1, -1),
    )
    assert full.shape == (9, 160, 176)
    # expression 1 alone (its own length) gives the same as inside the padded batch
    one = TEXT.select(1)
    with torch.no_grad():
        alone = model.decode(video, model.encode_text(one.input_ids, one.attention_mask))
    torch.testing.assert_close(alone.logits[-1], out.logits[-1][3:6], atol=1e-4, rtol=1e-4)


def test_small_inputs_are_refused(model) -> None:
    with pytest.raises(ValueError, match="144"):
        model.encode_video(torch.randn(1, 2, 3, 112, 160), torch.tensor([[112, 160]]))


def test_frame_and_expression_chunks_do_not_change_results(model) -> None:
    frames = torch.randn(5, 3, 144, 150)
    with torch.no_grad():
        text = model.encode_text(TEXT.input_ids, TEXT.attention_mask)
    whole = predict_clip(model, frames, text, frame_chunk=36, expression_chunk=8)
    chunked = predict_clip(model, frames, text, frame_chunk=2, expression_chunk=1)
    for a, b in zip(whole, chunked, strict=True):
        assert a.query == b.query
        assert a.logits.shape == (5, 144, 150)
        torch.testing.assert_close(a.logits, b.logits, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(a.frame_scores, b.frame_scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("clip_length", [None, 2])
def test_producer_outputs(model, clip_length) -> None:
    producer = SgMgProducer(model, SgMgProtocol(short_side=144, clip_length=clip_length))
    assert isinstance(producer, Producer)
    frames = torch.randint(0, 255, (5, 3, 100, 130), dtype=torch.uint8)
    results = list(producer.segment_video(frames, TEXT))
    assert [r.index for r in results] == [0, 1, 2]
    for r in results:
        assert r.probs.shape == (5, 100, 130) and r.scores.shape == (5,)
        assert float(r.probs.min()) >= 0 and float(r.probs.max()) <= 1
    with pytest.raises(ValueError, match="protocol"):
        SgMgProducer(model, "kinetics")


def _batch() -> ClipBatch:
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(2, 2, 160, 160)
    masks[0, :, 40:90, 30:80] = 1
    masks[1, 0, 100:140, 100:150] = 1  # invisible in frame 1
    boxes = torch.tensor(
        [
            [[55 / 144, 65 / 144, 50 / 144, 50 / 144]] * 2,
            [[125 / 150, 120 / 150, 50 / 150, 40 / 150], [0.0] * 4],
        ]
    )
    text = _text([[0, 5, 6, 2], [0, 7, 2]])
    return ClipBatch(
        frames=torch.randn(2, 2, 3, 160, 160, generator=g),
        image_sizes=torch.tensor([[144, 144], [150, 150]]),
        input_ids=text.input_ids,
        attention_mask=text.attention_mask,
        masks=masks,
        boxes=boxes,
        valid=masks.flatten(2).any(-1),
        expression_counts=[1, 1],
    )


def test_training_objective_terms_and_descent() -> None:
    torch.manual_seed(0)
    net = build_sgmg(tiny_config(vocab_size=20))
    terms = sgmg_loss(net.train(), _batch())
    assert len(terms) == 7 * net.num_decoder_layers + 1 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    grads = {
        n.split(".")[0]
        for n, p in net.named_parameters()
        if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert {
        "backbone",
        "text_encoder",
        "transformer",
        "controller",
        "mask_refine",
        "input_fft_post",
    } <= grads
    net.zero_grad()
    batch = _batch()
    trainer = Trainer(net, sgmg_loss, OptimConfig(steps=8, lr=1e-3, lr_by_prefix={}, grad_clip=1.0))
    history = trainer.fit(lambda step: batch, log_every=4)
    assert history[-1]["loss"] < history[0]["loss"]
