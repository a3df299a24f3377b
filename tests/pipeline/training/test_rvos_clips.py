"""Training clips from a Ref-YouTube-VOS-layout folder (the synthetic benchmark)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.adapters.tokenize import build_word_tokenizer
from pipeline.core.data import synthetic_vocabulary, write_synthetic_benchmark
from pipeline.core.errors import UserError
from pipeline.training.rvos_clips import ClipConfig, RVOSClipDataset, swap_left_right


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_benchmark(root, seed=3, videos={"train": 3, "valid": 1, "test": 1})
    return root


def test_swap_left_right() -> None:
    assert (
        swap_left_right("the Left circle moving to the right")
        == "the right circle moving to the left"
    )
    assert swap_left_right("leftover") == "leftover"


def test_batches_are_deterministic_and_well_formed(synth: Path) -> None:
    tok = build_word_tokenizer(synthetic_vocabulary())
    ds = RVOSClipDataset(synth, tok, ClipConfig(num_frames=3), seed=1)
    a, b = ds.batch(5, 2), ds.batch(5, 2)
    assert torch.equal(a.frames, b.frames) and a.texts == b.texts
    assert not torch.equal(a.frames, ds.batch(6, 2).frames)
    B, T, C, Hp, Wp = a.frames.shape
    assert (B, T, C) == (2, 3, 3) and Hp % 32 == 0 and Wp % 32 == 0 and min(Hp, Wp) >= 144
    assert a.masks.shape == (2, 3, Hp, Wp) and a.boxes.shape == (2, 3, 4)
    assert a.valid.any(1).all()  # every clip shows its object somewhere
    for x in range(2):
        h, w = a.image_sizes[x].tolist()
        assert not a.masks[x, :, h:].any() and not a.masks[x, :, :, w:].any()
        assert torch.equal(a.valid[x], a.masks[x].flatten(1).any(1))
    assert a.input_ids.shape[0] == 2 and a.expression_counts == [1, 1]


def test_multi_expression_clips_have_distinct_objects(synth: Path) -> None:
    tok = build_word_tokenizer(synthetic_vocabulary())
    ds = RVOSClipDataset(synth, tok, ClipConfig(num_frames=2, expressions_per_clip=3), seed=0)
    batch = ds.batch(0, 1)
    n = batch.expression_counts[0]
    assert 1 <= n <= 3 and batch.masks.shape[0] == n == batch.input_ids.shape[0]
    overlap = (batch.masks[:, None] * batch.masks[None]).flatten(2).sum(-1)
    assert (overlap - torch.diag(torch.diag(overlap))).sum() == 0  # different objects


def test_split_without_ground_truth_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        RVOSClipDataset(tmp_path, build_word_tokenizer(["a"]))
