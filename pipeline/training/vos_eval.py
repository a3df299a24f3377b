"""Scoring a propagator on a Ref-YouTube-VOS-layout split (the synthetic benchmark's valid split).

Two measurements, per expression, with the J&F of :mod:`pipeline.core.scoring`:

- ``gt_key``: propagate the ground-truth mask of the key frame (the frame where the referred
  object is largest) over the whole video, both ways (the challenge protocol);
- ``noisy``: a simulated fused RVOS mask - ground truth with per-frame producer mistakes
  (missed frames, a wrong object, dilation / erosion, shifts, spurious blobs) and a per-frame
  confidence that follows the frame's quality - scored as is, and propagated from its most
  confident frame. Propagation should improve it.

The noise is deterministic from (seed, video, expression).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.core.data import open_dataset
from pipeline.core.scoring import j_and_f
from vos.engine import PropagationEngine
from vos.protocol import ProtocolConfig, propagate_video


@dataclass(frozen=True)
class NoiseConfig:
    """Producer mistakes per frame (probabilities) and their size (pixels)."""

    miss: float = 0.1
    wrong_object: float = 0.08
    morph_max: int = 2
    shift_max: int = 3
    blob: float = 0.2
    score_noise: float = 0.05


def noisy_fused_masks(
    gt: np.ndarray, others: list[np.ndarray], rng: np.random.Generator, noise: NoiseConfig
) -> tuple[np.ndarray, np.ndarray]:
    """``T x H x W`` bool ground truth -> (noisy masks, per-frame confidence T float)."""
    T, H, W = gt.shape
    out = np.zeros_like(gt)
    for t in range(T):
        r = rng.random()
        if r < noise.miss:
            continue
        if r < noise.miss + noise.wrong_object and others:
            out[t] = others[int(rng.integers(len(others)))][t]
            continue
        m = gt[t].astype(np.uint8)
        k = int(rng.integers(0, noise.morph_max + 1))
        if k:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
            m = cv2.dilate(m, kernel) if rng.random() < 0.5 else cv2.erode(m, kernel)
        dy, dx = (int(v) for v in rng.integers(-noise.shift_max, noise.shift_max + 1, size=2))
        m = np.roll(m, (dy, dx), axis=(0, 1))
        if rng.random() < noise.blob:
            cy, cx = int(rng.integers(H)), int(rng.integers(W))
            axes = (int(rng.integers(3, max(4, H // 8))), int(rng.integers(3, max(4, W // 8))))
            cv2.ellipse(m, (cx, cy), axes, 0, 0, 360, 1, -1)
        out[t] = m > 0
    inter = (out & gt).sum((1, 2))
    union = (out | gt).sum((1, 2))
    quality = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    scores = quality + rng.normal(0, noise.score_noise, size=T)
    scores[~out.any((1, 2))] = -1.0  # producers give empty frames low scores
    return out, scores


def _jf(pred: np.ndarray, gt: np.ndarray) -> float:
    j, f = j_and_f(pred, gt)
    return float((j.mean() + f.mean()) / 2)


@dataclass
class EvalReport:
    """Mean J&F over the split's expressions for each measurement."""

    gt_key: float
    noisy_input: float
    noisy_propagated: float
    expressions: int
    per_video: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "gt_key_JF": round(self.gt_key, 4),
            "noisy_input_JF": round(self.noisy_input, 4),
            "noisy_propagated_JF": round(self.noisy_propagated, 4),
            "expressions": self.expressions,
        }


def evaluate_propagator(
    propagator: PropagationEngine,
    root: str | Path,
    split: str = "valid",
    *,
    seed: int = 0,
    noise: NoiseConfig | None = None,
    protocol: ProtocolConfig | None = None,
    max_videos: int | None = None,
) -> EvalReport:
    """Both measurements on ``split`` (see the module docstring)."""
    noise = noise or NoiseConfig()
    dataset = open_dataset("ytvos", root, split)
    sums = {"gt_key": 0.0, "noisy_input": 0.0, "noisy_propagated": 0.0}
    count = 0
    per_video: dict[str, dict[str, float]] = {}
    for video in dataset.videos()[:max_videos]:
        frames = torch.from_numpy(dataset.read_frames(video.id)).permute(0, 3, 1, 2).contiguous()
        gts = {}
        for exp in dataset.expressions(video.id):
            gt = dataset.ground_truth(video.id, exp.id)
            if gt is not None:
                gts[exp.id] = gt
        if not gts:
            continue
        gt_keys = {e: int(m.sum((1, 2)).argmax()) for e, m in gts.items()}
        noisy, noisy_keys = {}, {}
        for e, gt in gts.items():
            others = [m for o, m in gts.items() if not np.array_equal(m, gt) and o != e]
            rng = np.random.default_rng([seed, zlib.crc32(f"{video.id}/{e}".encode())])
            noisy[e], scores = noisy_fused_masks(gt, others, rng, noise)
            noisy_keys[e] = int(np.argmax(scores))
        from_gt = propagate_video(
            propagator,
            frames,
            {e: torch.from_numpy(m) for e, m in gts.items()},
            gt_keys,
            protocol,
        )
        from_noisy = propagate_video(
            propagator,
            frames,
            {e: torch.from_numpy(m) for e, m in noisy.items()},
            noisy_keys,
            protocol,
        )
        video_sums = {k: 0.0 for k in sums}
        for e, gt in gts.items():
            video_sums["gt_key"] += _jf(from_gt[e].masks.numpy(), gt)
            video_sums["noisy_input"] += _jf(noisy[e], gt)
            video_sums["noisy_propagated"] += _jf(from_noisy[e].masks.numpy(), gt)
        for k, v in video_sums.items():
            sums[k] += v
        per_video[video.id] = {k: v / len(gts) for k, v in video_sums.items()}
        count += len(gts)
    if count == 0:
        raise ValueError(f"{root} split {split!r} has no expression with ground truth")
    return EvalReport(
        sums["gt_key"] / count,
        sums["noisy_input"] / count,
        sums["noisy_propagated"] / count,
        count,
        per_video,
    )
