"""Training clips for the RVOS models from Ref-YouTube-VOS-layout folders (synthetic benchmark too).

Follows the reference recipes (ReferFormer / SgMg ``datasets/ytvos.py``, ``transforms_video.py``):
a random (video, expression) with ground truth; ``num_frames`` frames around a random anchor (one
or two neighbours within 3 frames, the rest anywhere in the video), sorted; at least one frame
shows the object; random short side from a list with a maximum size; horizontal flip with
"left" <-> "right" swapped in the expression; frames normalised with the ImageNet statistics and
the batch zero-padded at the bottom/right to a multiple of 32. The official temporal reversal
(probability 0.3) is off by default: it contradicts motion words ("moving left", "entering").

Every batch is a pure function of (seed, step), so a resumed run sees the batches it would have
seen. Decoded videos are kept in memory (the benchmark is small); ground truth comes from
:mod:`pipeline.core.data`.

A :class:`models.train.batch.ClipBatch` holds B clips; with ``expressions_per_clip`` > 1
(multi-object training) each clip carries up to that many expressions of *different* objects
of the same frames.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.common.rvos_inference import IMAGENET_MEAN, IMAGENET_STD
from models.train.batch import ClipBatch
from models.train.boxes import masks_to_boxes
from pipeline.adapters.tokenize import TextTokenizer
from pipeline.core.data import open_dataset
from pipeline.core.errors import UserError

_SWAP = {"left": "right", "right": "left"}
_WORD = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """The expression of a horizontally flipped clip."""
    return _WORD.sub(lambda m: _SWAP[m.group(1).lower()], text)


@dataclass(frozen=True)
class ClipConfig:
    """How clips are sampled and augmented."""

    num_frames: int = 3
    short_sides: tuple[int, ...] = (144, 160, 176, 192)
    max_size: int = 320
    hflip: bool = True
    reverse_prob: float = 0.0
    local_window: int = 3
    size_divisibility: int = 32
    min_size: int = 144  # padded size at least this (SgMg: the stride-64 level >= 3x3)
    expressions_per_clip: int = 1


@dataclass(frozen=True)
class _Sample:
    video: str
    expressions: tuple[str, ...]


def _resize_keep_ratio(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    scale = short / min(h, w)
    if max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return max(round(h * scale), 1), max(round(w * scale), 1)


class RVOSClipDataset:
    """Deterministic clip batches from a Ref-YouTube-VOS-layout split with ground truth.

    Args:
        root: dataset root (``lsvos data synth --out ROOT`` writes one).
        tokenizer: the model's tokenizer.
        config: sampling and augmentation.
        split: usually ``train``.
        seed: base of every batch's random stream.
        format: dataset format for :func:`pipeline.core.data.open_dataset`.
    """

    def __init__(
        self,
        root: str | Path,
        tokenizer: TextTokenizer,
        config: ClipConfig = ClipConfig(),
        *,
        split: str = "train",
        seed: int = 0,
        format: str = "ytvos",
    ) -> None:
        self.dataset = open_dataset(format, Path(root), split)
        if not self.dataset.has_ground_truth:
            raise UserError(f"{root} split {split!r} has no ground truth to train on")
        self.tokenizer = tokenizer
        self.config = config
        self.seed = seed
        self._frames: dict[str, np.ndarray] = {}
        self._labels: dict[str, dict[str, np.ndarray]] = {}
        self.samples = self._index()
        if not self.samples:
            raise UserError(f"{root} split {split!r} has no expression with ground truth")

    def _index(self) -> list[_Sample]:
        samples = []
        for vid in self.dataset.video_ids():
            exps = self.dataset.expressions(vid)
            if self.config.expressions_per_clip <= 1:
                samples.extend(_Sample(vid, (e.id,)) for e in exps)
            elif exps:
                samples.append(_Sample(vid, tuple(e.id for e in exps)))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def _video(self, video_id: str) -> np.ndarray:
        if video_id not in self._frames:
            self._frames[video_id] = self.dataset.read_frames(video_id)
        return self._frames[video_id]

    def _mask(self, video_id: str, exp_id: str) -> np.ndarray:
        per_video = self._labels.setdefault(video_id, {})
        if exp_id not in per_video:
            gt = self.dataset.ground_truth(video_id, exp_id)
            if gt is None:
                raise UserError(f"video {video_id} expression {exp_id} has no ground truth")
            per_video[exp_id] = gt
        return per_video[exp_id]

    def _frame_indices(self, rng: np.random.Generator, T: int, visible: np.ndarray) -> np.ndarray:
        n = self.config.num_frames
        for _ in range(20):
            anchor = int(rng.integers(T))
            picks = {anchor}
            w = self.config.local_window
            if n >= 2:
                picks.add(int(np.clip(anchor - rng.integers(1, w + 1), 0, T - 1)))
            if n >= 3:
                picks.add(int(np.clip(anchor + rng.integers(1, w + 1), 0, T - 1)))
            order = list(picks)
            while len(order) < n:
                order.append(int(rng.integers(T)))  # global frames (repeats allowed, as upstream)
            indices = np.sort(np.asarray(order[:n]))
            if visible[indices].any():
                return indices
        return np.sort(rng.choice(np.flatnonzero(visible), size=n, replace=True))

    def _choose_expressions(self, rng: np.random.Generator, sample: _Sample) -> list[str]:
        E = self.config.expressions_per_clip
        if E <= 1:
            return list(sample.expressions)
        by_object: dict[tuple[int, ...], list[str]] = {}
        for exp in self.dataset.expressions(sample.video):
            if exp.id in sample.expressions:
                by_object.setdefault(tuple(exp.obj_ids or ()), []).append(exp.id)
        objects = list(by_object.values())
        rng.shuffle(objects)
        return [group[int(rng.integers(len(group)))] for group in objects[:E]]

    def batch(self, step: int, batch_size: int) -> ClipBatch:
        """The batch of training step ``step`` (deterministic)."""
        rng = np.random.default_rng([self.seed, step])
        clips = []
        for _ in range(batch_size):
            sample = self.samples[int(rng.integers(len(self.samples)))]
            clips.append(self._clip(rng, sample))
        return self._collate(clips)

    def _clip(self, rng: np.random.Generator, sample: _Sample) -> dict:
        cfg = self.config
        frames = self._video(sample.video)
        exp_ids = self._choose_expressions(rng, sample)
        masks = [self._mask(sample.video, e) for e in exp_ids]
        visible = np.stack([m.any(axis=(1, 2)) for m in masks]).any(0)
        idx = self._frame_indices(rng, frames.shape[0], visible)
        if rng.random() < cfg.reverse_prob:
            idx = idx[::-1].copy()
        clip = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2).float()  # T x 3 x H x W
        gts = torch.from_numpy(np.stack([m[idx] for m in masks])).float()  # E x T x H x W
        texts = [self.dataset.expression(sample.video, e).text for e in exp_ids]
        H, W = clip.shape[-2:]
        short = int(cfg.short_sides[int(rng.integers(len(cfg.short_sides)))])
        h, w = _resize_keep_ratio(H, W, short, cfg.max_size)
        clip = F.interpolate(
            clip, size=(h, w), mode="bilinear", align_corners=False, antialias=True
        )
        gts = F.interpolate(gts, size=(h, w), mode="nearest")
        if cfg.hflip and rng.random() < 0.5:
            clip, gts = clip.flip(-1), gts.flip(-1)
            texts = [swap_left_right(t) for t in texts]
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        clip = (clip.clamp(0, 255) / 255.0 - mean) / std
        return {"frames": clip, "masks": gts, "texts": texts}

    def _collate(self, clips: Sequence[dict]) -> ClipBatch:
        d = self.config.size_divisibility
        # pad to the divisibility and to the model's minimum input (no distortion)
        low = self.config.min_size
        Hp = max(-(-max(c["frames"].shape[-2], low) // d) * d for c in clips)
        Wp = max(-(-max(c["frames"].shape[-1], low) // d) * d for c in clips)
        frames, sizes, masks, boxes, valid, texts, counts = [], [], [], [], [], [], []
        for c in clips:
            h, w = c["frames"].shape[-2:]
            frames.append(F.pad(c["frames"], (0, Wp - w, 0, Hp - h)))
            sizes.append((h, w))
            for gt in c["masks"]:
                masks.append(F.pad(gt, (0, Wp - w, 0, Hp - h)))
                boxes.append(masks_to_boxes(gt.bool()))
                valid.append(gt.flatten(1).any(1))
            texts.extend(c["texts"])
            counts.append(len(c["texts"]))
        tokens = self.tokenizer(texts)
        return ClipBatch(
            frames=torch.stack(frames),
            image_sizes=torch.tensor(sizes, dtype=torch.long),
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            masks=torch.stack(masks),
            boxes=torch.stack(boxes),
            valid=torch.stack(valid),
            expression_counts=counts,
            texts=texts,
        )
