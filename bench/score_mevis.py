"""Scoring MeViS valid_u end to end: ``lsvos eval --format mevis``'s scorer against the loop of
MeViS's ``tools/eval_mevis.py`` (henghuiding/MeViS@7c0620b) in one process, on the same
prediction PNG folder, same run. Every per-expression J and F must be identical.

The baseline does what one of that script's workers does per expression: ``cv2.imread`` of each
PNG (greyscale), ``pycocotools.mask.decode`` summed over the expression's ``anno_id``s,
``db_eval_iou`` on the stacks and ``f_measure`` per frame (full frames, ``cv2.dilate`` with
the disk of skimage). Data: the synthetic MeViS benchmark's valid_u at one frame size, with
noisy predictions (shifted, grown, shrunk, dropped, another expression's target).

    python bench/score_mevis.py [--videos 8] [--size 480x854] [--work /tmp/lsvos_bench_mevis]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from pipeline.core.data import open_dataset
from pipeline.core.data.synth_mevis import write_synthetic_mevis_benchmark
from pipeline.core.io import encode_mask_png
from pipeline.core.masks import open_masks
from pipeline.core.scoring import score_mask_set


def disk(radius: int) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def bmap(seg: np.ndarray) -> np.ndarray:
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1], s[:-1, :], se[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def f_measure(fg: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    element = disk(int(np.ceil(bound_th * np.linalg.norm(fg.shape))))
    fg_b, gt_b = bmap(fg), bmap(gt)
    fg_match = fg_b * cv2.dilate(gt_b.astype(np.uint8), element)
    gt_match = gt_b * cv2.dilate(fg_b.astype(np.uint8), element)
    n_fg, n_gt = np.sum(fg_b), np.sum(gt_b)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = np.sum(fg_match) / float(n_fg), np.sum(gt_match) / float(n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def eval_mevis_loop(pred: Path, split: Path) -> dict[str, tuple[float, float]]:
    """``{"<video>/<exp>": (j, f)}`` as eval_mevis.py's workers compute them."""
    videos = json.loads((split / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split / "mask_dict.json").read_text())
    out = {}
    for vid, info in videos.items():
        for exp, entry in info["expressions"].items():
            h, w = cv2.imread(str(pred / vid / exp / "00000.png"), cv2.IMREAD_GRAYSCALE).shape
            T = len(info["frames"])
            gt, masks = np.zeros((T, h, w), np.uint8), np.zeros((T, h, w), np.uint8)
            for k, frame in enumerate(info["frames"]):
                for anno in entry["anno_id"]:
                    rle = mask_dict[str(anno)][k]
                    if rle:
                        gt[k] += coco_mask.decode(rle)
                masks[k] = cv2.imread(str(pred / vid / exp / f"{frame}.png"), cv2.IMREAD_GRAYSCALE)
            g, p = gt.astype(bool), masks.astype(bool)
            inters, union = np.sum(g & p, axis=(1, 2)), np.sum(g | p, axis=(1, 2))
            with np.errstate(invalid="ignore", divide="ignore"):
                j = inters / union
            j[np.isclose(union, 0)] = 1
            f = np.array([f_measure(masks[k], gt[k]) for k in range(T)])
            out[f"{vid}/{exp}"] = (float(j.mean()), float(f.mean()))
    return out


def read_floor(pred: Path, split: Path) -> int:
    """Only the reading of the baseline: every PNG and every ground-truth RLE, decoded."""
    videos = json.loads((split / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split / "mask_dict.json").read_text())
    pixels = 0
    for vid, info in videos.items():
        for exp, entry in info["expressions"].items():
            for k, frame in enumerate(info["frames"]):
                for anno in entry["anno_id"]:
                    rle = mask_dict[str(anno)][k]
                    if rle:
                        pixels += int(coco_mask.decode(rle)[0, 0])
                png = cv2.imread(str(pred / vid / exp / f"{frame}.png"), cv2.IMREAD_GRAYSCALE)
                pixels += int(png[0, 0])
    return pixels


def noisy(gt: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(gt.shape, bool)
    kernel = np.ones((5, 5), np.uint8)
    for k, frame in enumerate(gt.astype(np.uint8)):
        kind = rng.integers(6)
        if kind == 1:
            frame = np.roll(frame, tuple(int(v) for v in rng.integers(-12, 13, 2)), axis=(0, 1))
        elif kind == 2:
            frame = cv2.dilate(frame, kernel, iterations=2)
        elif kind == 3:
            frame = cv2.erode(frame, kernel, iterations=2)
        elif kind == 4:
            frame = np.zeros_like(frame)
        elif kind == 5:
            frame = other[k].astype(np.uint8)
        out[k] = frame > 0
    return out


def prepare(work: Path, videos: int, size: tuple[int, int]) -> tuple[Path, Path]:
    data = work / "mevis"
    split = data / "valid_u"
    pred = work / "pred"
    if not (pred / "done").is_file():
        write_synthetic_mevis_benchmark(
            data, seed=0, videos={"valid_u": videos}, sizes=(size,), splits=("valid_u",)
        )
        ds = open_dataset("mevis", data, "valid_u")
        rng = np.random.default_rng(0)
        for video in ds.videos():
            exps = ds.expressions(video.id)
            truths = [ds.ground_truth(video.id, e.id) for e in exps]
            for i, exp in enumerate(exps):
                masks = noisy(truths[i], truths[(i + 1) % len(exps)], rng)
                folder = pred / video.id / exp.id
                folder.mkdir(parents=True, exist_ok=True)
                for frame, m in zip(video.frame_ids, masks, strict=True):
                    (folder / f"{frame}.png").write_bytes(encode_mask_png(m))
        (pred / "done").write_text("")
    return split, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--size", default="480x854", help="HxW of every video")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lsvos_bench_mevis"))
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    split, pred = prepare(args.work, args.videos, size)  # type: ignore[arg-type]
    ds = open_dataset("mevis", split.parent, "valid_u")
    frames = sum(v.num_frames * len(ds.expressions(v.id)) for v in ds.videos())
    print(f"load average before: {os.getloadavg()}")
    runs = {}
    for name, fn in (
        ("eval_mevis.py loop", lambda: eval_mevis_loop(pred, split)),
        ("score_mask_set", lambda: score_mask_set(open_masks(pred), ds, "mevis")),
        ("floor: reading only", lambda: read_floor(pred, split)),
    ):
        wall, cpu = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools under numpy 2
            result = fn()
        runs[name] = (result, time.perf_counter() - wall, time.process_time() - cpu)
    official = runs["eval_mevis.py loop"][0]
    table = runs["score_mask_set"][0]
    ours = {f"{r.video}/{r.expression}": (r.J, r.F) for r in table.rows}
    assert ours == official, "per-expression J / F differ"
    print(f"{len(ours)} expressions, {frames} expression-frames at {size[0]}x{size[1]}")
    base_wall, base_cpu = runs["eval_mevis.py loop"][1:]
    for name, (_, wall, cpu) in runs.items():
        print(
            f"{name:20s} wall {wall:6.2f} s  CPU {cpu:6.2f} s  {1000 * cpu / frames:6.2f} ms/frame"
            f"  vs baseline {base_wall / wall:5.2f}x wall, {base_cpu / cpu:5.2f}x CPU"
        )
    print(f"J&F {100 * table.JF:.3f}; every per-expression J and F identical")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
