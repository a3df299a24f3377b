"""Shared set-up of the vote and scoring benchmarks: a 720p synthetic split and five noisy
"producers" whose masks disagree with the ground truth as real models do (shifted, eroded or
dilated, frames dropped, spurious blobs)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipeline.core.data import open_dataset, write_synthetic_benchmark
from pipeline.core.masks import MaskSet, Track

SIZE_720P = (720, 1280)


def make_split(root: Path, videos: int, seed: int = 0, size: tuple[int, int] = SIZE_720P):
    """The valid split of a synthetic benchmark at one frame size (written once, then reused)."""
    if not (root / "synth.json").is_file():
        write_synthetic_benchmark(root, seed=seed, videos=videos, sizes=(size,), splits=("valid",))
    return open_dataset("ytvos", root, "valid")


def perturb(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong prediction of ``T x H x W`` ground truth."""
    T, H, W = gt.shape
    dx, dy = (int(v) for v in rng.integers(-6, 7, 2))
    out = np.roll(gt, (dy, dx), axis=(1, 2)).astype(np.uint8)
    k = int(rng.integers(0, 5))
    if k:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
        op = cv2.erode if rng.random() < 0.5 else cv2.dilate
        out = np.stack([op(f, kernel) for f in out])
    for t in range(T):
        u = rng.random()
        if u < 0.06:
            out[t] = 0
        elif u < 0.16:
            centre = (int(rng.integers(0, W)), int(rng.integers(0, H)))
            cv2.circle(out[t], centre, int(rng.integers(8, H // 8)), 1, -1)
    return out.astype(bool)


def write_sources(ds, root: Path, n_sources: int = 5, seed: int = 1) -> list[dict[str, Path]]:
    """For each source: a submission-layout folder written with PIL (as upstream repositories
    do) and an RLE mask set holding the same masks. Returns ``[{"png": dir, "rle": dir}]``."""
    out = []
    for s in range(n_sources):
        png_root = root / f"model{s}"
        rle_root = root / f"model{s}_rle"
        out.append({"png": png_root, "rle": rle_root})
        if (rle_root / "videos").is_dir() and len(list((rle_root / "videos").iterdir())) == len(ds):
            continue
        rng = np.random.default_rng([seed, s])
        rle = MaskSet(rle_root, "rle")
        for video in ds.videos():
            for exp in ds.expressions(video.id):
                masks = perturb(ds.ground_truth(video.id, exp.id), rng)
                scores = rng.random(video.num_frames)
                rle.write(video.id, exp.id, Track(video.frame_ids, masks, scores))
                folder = png_root / "Annotations" / video.id / exp.id
                folder.mkdir(parents=True, exist_ok=True)
                for fid, m in zip(video.frame_ids, masks, strict=True):
                    Image.fromarray(m.astype(np.uint8) * 255).convert("L").save(
                        folder / f"{fid}.png"
                    )
            rle.mark_complete(video.id, [e.id for e in ds.expressions(video.id)])
    return out
