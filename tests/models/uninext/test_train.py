"""UNINEXT training terms: matching, targets, and a tiny model that learns a batch."""

from __future__ import annotations

from dataclasses import replace

import torch

from models.train.loop import OptimConfig, Trainer
from models.uninext.model import build_uninext
from models.uninext.spec import UNINEXT_TINY
from models.uninext.train import (
    FrameBatch,
    match_queries,
    target_boxes,
    uninext_clip_loss,
    uninext_losses,
)


def _batch() -> FrameBatch:
    g = torch.Generator().manual_seed(0)
    N, H, W = 3, 64, 96  # small: the test trains 12 steps
    images = torch.randint(0, 256, (N, 3, H, W), dtype=torch.uint8, generator=g)
    masks = torch.zeros(N, H, W, dtype=torch.bool)
    masks[0, 10:30, 20:50] = True
    masks[2, 30:50, 60:90] = True  # row 1: the object is out of view
    images[masks[:, None].expand(-1, 3, -1, -1)] = 250
    sizes = torch.tensor([[64, 96], [64, 80], [56, 96]])
    ids = torch.tensor([[5, 6, 7], [8, 9, 1], [10, 11, 12]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]])
    return FrameBatch(images, sizes, ids, mask, masks)


def test_target_boxes_use_each_rows_content_size() -> None:
    batch = _batch()
    boxes = target_boxes(batch.masks, batch.image_sizes)
    torch.testing.assert_close(boxes[0], torch.tensor([35 / 96, 20 / 64, 30 / 96, 20 / 64]))
    assert boxes[1].abs().sum() == 0
    torch.testing.assert_close(boxes[2], torch.tensor([75 / 96, 40 / 56, 30 / 96, 20 / 56]))


def test_matching_prefers_the_overlapping_confident_query() -> None:
    targets = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    boxes = torch.tensor([[[0.1, 0.1, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2]]])
    logits = torch.tensor([[5.0, -5.0, 5.0]])
    assert int(match_queries(logits, boxes, targets)[0]) == 2
    assert int(match_queries(torch.zeros(1, 3), boxes, targets)[0]) == 1


def test_a_tiny_model_learns_a_batch() -> None:
    torch.manual_seed(0)
    model = build_uninext(UNINEXT_TINY)
    batch = _batch()
    first = uninext_losses(model, batch)
    expected = {"cls", "bbox", "giou", "iou", "mask", "dice", "cls_enc", "bbox_enc", "giou_enc"}
    assert expected | {"loss", "cls_0", "mask_0"} <= set(first)
    assert all(torch.isfinite(v) for v in first.values())
    config = OptimConfig(steps=12, lr=1e-3, lr_by_prefix={}, grad_clip=0.1)
    history = Trainer(model, uninext_losses, config).fit([batch] * 12, log_every=4)
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]


def test_clip_batches_become_frame_samples(tmp_path) -> None:
    from pipeline.adapters.tokenize import build_word_tokenizer
    from pipeline.core.data import write_synthetic_benchmark
    from pipeline.training.rvos_clips import ClipConfig, RVOSClipDataset

    root = write_synthetic_benchmark(tmp_path / "synth", seed=1, videos=1, sizes=((48, 64),))
    tokenizer = build_word_tokenizer((root / "vocabulary.txt").read_text().split())
    clips = RVOSClipDataset(
        root, tokenizer, ClipConfig(num_frames=2, short_sides=(64,), min_size=64)
    )
    batch = clips.batch(0, 2)
    spec = UNINEXT_TINY
    text = replace(spec.text, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id)
    model = build_uninext(replace(spec, text=text))
    frames = FrameBatch.from_clips(batch, model)
    assert frames.images.shape[0] == 4 and frames.normalized
    h, w = frames.image_sizes[0].tolist()
    # ImageNet statistics in 0..255 are UNINEXT's: the normalised pixels carry over unchanged
    torch.testing.assert_close(frames.images[:2, :, :h, :w], batch.frames[0, :, :, :h, :w])
    torch.testing.assert_close(frames.masks[:2], batch.masks[0] > 0.5)
    terms = uninext_clip_loss(model, batch)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()


def test_the_tiny_preset_reads_the_synthetic_tokenizer() -> None:
    from models.uninext.spec import tiny_spec
    from pipeline.adapters.tokenize import build_word_tokenizer
    from pipeline.core.data import synthetic_vocabulary

    tokenizer = build_word_tokenizer(synthetic_vocabulary())
    assert tiny_spec(tokenizer.vocab_size, tokenizer.pad_token_id) == UNINEXT_TINY
