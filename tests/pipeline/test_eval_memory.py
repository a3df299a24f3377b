"""``lsvos eval``'s memory: scoring holds one expression's ground truth and prediction at a
time, so the traced peak stays flat in the number of expressions per video and of videos, and
the scores equal those of scoring a whole video at once."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from pipeline.core.data import open_dataset
from pipeline.core.io import atomic_write_bytes, atomic_write_json, encode_index_png
from pipeline.core.masks import MaskSet, Track
from pipeline.core.scoring import score_mask_set, score_video

T, H, W = 6, 96, 128


def _write_split(root: Path, videos: int, expressions: int, seed: int) -> Path:
    """A Ref-YouTube-VOS layout valid split: ``videos`` videos of ``T`` frames, each with
    ``expressions`` objects (one expression each, ``obj_id`` 1, 2, ...), and a mask set of
    predictions of every expression (the object, shifted by a pixel or two). Returns the
    prediction mask set's folder."""
    rng = np.random.default_rng(seed)
    frames = [f"{5 * t:05d}" for t in range(T)]
    meta: dict = {"videos": {}}
    preds = MaskSet(root / "pred")
    for v in range(videos):
        vid = f"vid{v:03d}"
        blocks = rng.integers(0, expressions + 1, (T, H // 16, W // 16), dtype=np.uint8)
        labels = blocks.repeat(16, axis=1).repeat(16, axis=2)  # objects of 16 x 16 blocks
        for fid, lab in zip(frames, labels, strict=True):
            atomic_write_bytes(
                root / "valid" / "Annotations" / vid / f"{fid}.png", encode_index_png(lab)
            )
        exps = {str(e): {"exp": f"object {e + 1}", "obj_id": e + 1} for e in range(expressions)}
        meta["videos"][vid] = {"expressions": exps, "frames": frames}
        for e in range(expressions):
            shifted = np.roll(labels == e + 1, (e % 3 - 1, e % 5 - 2), axis=(1, 2))
            preds.write(vid, str(e), Track(tuple(frames), shifted))
        preds.mark_complete(vid, [str(e) for e in range(expressions)])
    atomic_write_json(root / "meta_expressions" / "valid" / "meta_expressions.json", meta)
    return root / "pred"


def _traced_peak(root: Path, pred: Path) -> int:
    dataset = open_dataset("ytvos", root, "valid")
    # a first, untraced run: one-off interpreter growth (interned path parts, caches) is not ours
    score_mask_set(MaskSet(pred), dataset)
    dataset = open_dataset("ytvos", root, "valid")
    tracemalloc.start()
    score_mask_set(MaskSet(pred), dataset)
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top


def test_peak_is_flat_in_expressions_per_video(tmp_path: Path) -> None:
    one = _traced_peak(tmp_path / "e1", _write_split(tmp_path / "e1", 2, 1, seed=1))
    eight = _traced_peak(tmp_path / "e8", _write_split(tmp_path / "e8", 2, 8, seed=8))
    stack = T * H * W  # one expression's masks: 74 kB; all of a video at once would be 16 x that
    assert eight < 1.5 * one + 4 * stack, (one, eight)


def test_peak_is_flat_in_videos(tmp_path: Path) -> None:
    small = _traced_peak(tmp_path / "v2", _write_split(tmp_path / "v2", 2, 3, seed=2))
    large = _traced_peak(tmp_path / "v16", _write_split(tmp_path / "v16", 16, 3, seed=16))
    assert large < 1.5 * small + 200_000, (small, large)


def test_scores_equal_scoring_each_video_whole(tmp_path: Path) -> None:
    pred = MaskSet(_write_split(tmp_path, 3, 4, seed=3))
    dataset = open_dataset("ytvos", tmp_path, "valid")
    table = score_mask_set(pred, dataset)
    expected = []
    for video in dataset.video_ids():
        exps = [e.id for e in dataset.expressions(video)]
        gt = {e: dataset.ground_truth(video, e) for e in exps}
        tracks = {e: pred.read(video, e) for e in exps}
        expected += score_video(tracks, gt, dataset.video(video).frame_ids, video=video)
    assert table.rows == expected
    assert 0 < table.JF < 1
