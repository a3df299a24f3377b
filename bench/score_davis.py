"""Scoring a 720p synthetic split: the vectorised scorer against a per-frame implementation of
the DAVIS 2017 algorithm (``davis2017/metrics.py``: ``db_eval_iou`` and ``f_measure`` on full
frames, cv2.dilate with skimage's disk), same masks in memory, same run. Every per-frame J and
F must be identical.

    python bench/score_davis.py [--videos 8] [--work /tmp/lsvos_bench]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from skimage.morphology import disk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vote_common import make_split, write_sources

from pipeline.core.masks import MaskSet
from pipeline.core.scoring import j_and_f, score_mask_set


def davis_frame_j(annotation: np.ndarray, segmentation: np.ndarray) -> float:
    annotation, segmentation = annotation.astype(bool), segmentation.astype(bool)
    inters = np.sum(segmentation & annotation, axis=(-2, -1))
    union = np.sum(segmentation | annotation, axis=(-2, -1))
    return 1.0 if np.isclose(union, 0) else float(inters / union)


def davis_bmap(seg: np.ndarray) -> np.ndarray:
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1], s[:-1, :], se[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def davis_frame_f(foreground: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(foreground.shape))
    fg_boundary, gt_boundary = davis_bmap(foreground), davis_bmap(gt)
    element = disk(int(bound_pix)).astype(np.uint8)
    fg_dil = cv2.dilate(fg_boundary.astype(np.uint8), element)
    gt_dil = cv2.dilate(gt_boundary.astype(np.uint8), element)
    gt_match, fg_match = gt_boundary * fg_dil, fg_boundary * gt_dil
    n_fg, n_gt = np.sum(fg_boundary), np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision, recall = np.sum(fg_match) / float(n_fg), np.sum(gt_match) / float(n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lsvos_bench"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    ds = make_split(args.work / "synth720", args.videos)
    pred_root = write_sources(ds, args.work / "sources")[0]["rle"]
    pred = MaskSet(pred_root)
    pairs = []
    for video in ds.videos():
        for exp in ds.expressions(video.id):
            pairs.append((pred.read(video.id, exp.id).masks, ds.ground_truth(video.id, exp.id)))
    n_frames = sum(g.shape[0] for _, g in pairs)
    print(f"{len(ds)} videos at 720p, {len(pairs)} expressions, {n_frames} frames")

    start = time.process_time()
    base = [
        (np.array([davis_frame_j(g[k], p[k]) for k in range(len(g))]),
         np.array([davis_frame_f(p[k], g[k]) for k in range(len(g))]))
        for p, g in pairs
    ]  # fmt: skip
    t_base = time.process_time() - start
    start = time.process_time()
    ours = [j_and_f(p, g) for p, g in pairs]
    t_ours = time.process_time() - start
    worst = max(
        max(np.abs(a[0] - b[0]).max(), np.abs(a[1] - b[1]).max())
        for a, b in zip(base, ours, strict=True)
    )
    start = time.perf_counter()
    table = score_mask_set(pred, ds, workers=1)
    t_e2e1 = time.perf_counter() - start
    start = time.perf_counter()
    score_mask_set(pred, ds, workers=2)
    t_e2e2 = time.perf_counter() - start
    print(
        f"per-frame DAVIS (baseline)   cpu {t_base:7.2f} s  {1e3 * t_base / n_frames:6.2f} ms/frame"
    )
    print(
        f"vectorised (pipeline)        cpu {t_ours:7.2f} s  {1e3 * t_ours / n_frames:6.2f} ms/frame"
    )
    print(f"speed-up {t_base / t_ours:.1f}x, largest per-frame difference {worst:.1e}")
    print(
        f"end to end (RLE masks + PNG ground truth read, score table): {t_e2e1:.2f} s wall with "
        f"1 process, {t_e2e2:.2f} s with 2; J&F {100 * table.JF:.2f}"
    )
    print(f"load average during the run: {os.getloadavg()}")


if __name__ == "__main__":
    main()
