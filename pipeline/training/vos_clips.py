"""Training clips for AOT / DeAOT and Cutie from Ref-YouTube-VOS-layout folders (the synthetic
benchmark included): the file side of :mod:`vos.train` and :mod:`vos.cutie.train`.

A clip = ``num_frames`` frames of one video in order (random gaps of 1..``max_gap``, reversed
with probability ``reverse_prob`` - VOS propagation does not care about direction, the official
``DATA_RANDOM_REVERSE_SEQ``), randomly rescaled, flipped and cropped to ``crop`` (the crop
centred near an object of the first frame), with up to ``max_objects`` objects visible in the
first frame relabelled 1..n in random order (the official identity shuffle) and every other
object set to background. Frames are normalised for AOT / DeAOT (``normalized``), or in
[0, 1] for Cutie, which normalises them itself. Every batch is a pure function of (seed, step),
so a resumed run sees the batches it would have seen. Decoded videos are kept in memory (the
benchmark is small).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.data import open_dataset
from pipeline.core.errors import UserError
from vos.preprocess import normalize_frames
from vos.train import VOSBatch


@dataclass(frozen=True)
class VOSClipConfig:
    """How clips are sampled and augmented."""

    num_frames: int = 5
    max_gap: int = 2
    crop: tuple[int, int] = (129, 129)
    scale_range: tuple[float, float] = (0.8, 1.25)
    base_scale: float = 1.0
    hflip: bool = True
    reverse_prob: float = 0.5
    max_objects: int = 3
    min_object_pixels: int = 20
    normalized: bool = True


@dataclass
class _Video:
    frames: np.ndarray  # T x H x W x 3 uint8
    labels: np.ndarray  # T x H x W uint8 object ids


class VOSClipDataset:
    """Clips from ``root``'s ``split`` (every video with ground truth)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        config: VOSClipConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config or VOSClipConfig()
        self.seed = seed
        dataset = open_dataset("ytvos", root, split)
        if not dataset.has_ground_truth:
            raise UserError(f"{root} split {split!r} has no ground-truth annotations to train on")
        self.videos: list[_Video] = []
        for video in dataset.videos():
            frames = dataset.read_frames(video.id)
            labels = np.zeros(frames.shape[:3], dtype=np.uint8)
            for exp in dataset.expressions(video.id):
                gt = dataset.ground_truth(video.id, exp.id)
                if gt is not None and exp.obj_ids:
                    labels[gt] = exp.obj_ids[0]
            if frames.shape[0] >= 2 and labels.any():
                self.videos.append(_Video(frames, labels))
        if not self.videos:
            raise UserError(f"{root} split {split!r} holds no annotated video of 2+ frames")

    def __len__(self) -> int:
        return len(self.videos)

    def batch(self, step: int, batch_size: int) -> VOSBatch:
        """The batch of ``step`` (deterministic)."""
        rng = np.random.default_rng([self.seed, step])
        clips = [self._clip(rng) for _ in range(batch_size)]
        frames = torch.stack([c[0] for c in clips])
        labels = torch.stack([c[1] for c in clips])
        counts = torch.tensor([c[2] for c in clips], dtype=torch.long)
        return VOSBatch(frames, labels, counts)

    def _clip(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        cfg = self.config
        for _ in range(50):
            video = self.videos[int(rng.integers(len(self.videos)))]
            index = self._frame_indices(rng, video.frames.shape[0])
            frames = torch.from_numpy(video.frames[index]).permute(0, 3, 1, 2).float()
            labels = torch.from_numpy(video.labels[index].astype(np.int64))
            frames, labels = self._augment(rng, frames, labels)
            ids, counts = torch.unique(labels[0], return_counts=True)
            present = [
                int(i)
                for i, c in zip(ids, counts, strict=True)
                if i > 0 and c >= cfg.min_object_pixels
            ]
            if present:
                break
        else:
            raise UserError("no clip with a visible object found in 50 tries")
        rng.shuffle(present)
        chosen = present[: cfg.max_objects]
        remap = torch.zeros(256, dtype=torch.long)
        for new, old in enumerate(chosen, start=1):
            remap[old] = new
        pixels = normalize_frames(frames) if cfg.normalized else frames / 255.0
        return pixels, remap[labels], len(chosen)

    def _frame_indices(self, rng: np.random.Generator, length: int) -> np.ndarray:
        cfg = self.config
        gaps = rng.integers(1, cfg.max_gap + 1, size=cfg.num_frames - 1)
        span = int(gaps.sum())
        if span >= length:
            gaps = np.ones_like(gaps)
            span = int(gaps.sum())
        start = int(rng.integers(0, max(1, length - span)))
        index = np.minimum(start + np.concatenate([[0], np.cumsum(gaps)]), length - 1)
        if rng.random() < cfg.reverse_prob:
            index = index[::-1]
        return index.copy()

    def _augment(
        self, rng: np.random.Generator, frames: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        scale = cfg.base_scale * float(rng.uniform(*cfg.scale_range))
        h, w = frames.shape[-2:]
        size = (max(8, round(h * scale)), max(8, round(w * scale)))
        frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        if cfg.hflip and rng.random() < 0.5:
            frames, labels = frames.flip(-1), labels.flip(-1)
        ch, cw = cfg.crop
        pad_h, pad_w = max(0, ch - size[0]), max(0, cw - size[1])
        if pad_h or pad_w:
            frames = F.pad(frames, (0, pad_w, 0, pad_h))
            labels = F.pad(labels, (0, pad_w, 0, pad_h))
        h, w = frames.shape[-2:]
        ys, xs = torch.nonzero(labels[0] > 0, as_tuple=True)
        if ys.numel():
            pick = int(rng.integers(ys.numel()))
            cy = int(ys[pick]) + int(rng.integers(-ch // 3, ch // 3 + 1))
            cx = int(xs[pick]) + int(rng.integers(-cw // 3, cw // 3 + 1))
        else:
            cy, cx = h // 2, w // 2
        y0 = int(np.clip(cy - ch // 2, 0, h - ch))
        x0 = int(np.clip(cx - cw // 2, 0, w - cw))
        frames = frames[..., y0 : y0 + ch, x0 : x0 + cw].clamp(0, 255)
        return frames, labels[..., y0 : y0 + ch, x0 : x0 + cw]
