"""A track: one (video, expression)'s masks over the listed frames, with optional scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.core.errors import UserError


@dataclass(frozen=True, eq=False)
class Track:
    """Masks of one (video, expression), frame by frame.

    ``frame_ids``: the listed frames, in order (``T``). ``masks``: ``T x H x W bool`` at the
    video's original size. ``scores``: ``T float32`` per-frame confidence (a producer's
    per-frame score; key frames are chosen from it), or ``None``. ``probs``: ``T x H x W``
    float16/float32 foreground probabilities in [0, 1], or ``None``.
    """

    frame_ids: tuple[str, ...]
    masks: np.ndarray
    scores: np.ndarray | None = None
    probs: np.ndarray | None = None

    def __post_init__(self) -> None:
        frame_ids = tuple(str(f) for f in self.frame_ids)
        masks = np.asarray(self.masks)
        if masks.dtype != bool:
            masks = masks != 0
        if masks.ndim != 3 or masks.shape[0] != len(frame_ids):
            raise ValueError(
                f"masks must be T x H x W with T = {len(frame_ids)} frames, got {masks.shape}"
            )
        object.__setattr__(self, "frame_ids", frame_ids)
        object.__setattr__(self, "masks", masks)
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
            if scores.shape[0] != len(frame_ids):
                raise ValueError(f"{scores.shape[0]} scores for {len(frame_ids)} frames")
            object.__setattr__(self, "scores", scores)
        if self.probs is not None:
            probs = np.asarray(self.probs)
            if probs.dtype not in (np.float16, np.float32):
                probs = probs.astype(np.float32)
            if probs.shape != masks.shape:
                raise ValueError(f"probs {probs.shape} do not match masks {masks.shape}")
            object.__setattr__(self, "probs", probs)

    @property
    def num_frames(self) -> int:
        return len(self.frame_ids)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    def key_frame(self) -> int | None:
        """Index of the highest score (the first one on ties), or ``None`` without scores."""
        if self.scores is None or self.num_frames == 0:
            return None
        return int(np.argmax(self.scores))

    def select(self, frame_ids: Sequence[str], *, label: str = "track") -> Track:
        """The track on ``frame_ids`` (in that order); a frame it lacks is a :class:`UserError`
        whose message starts with ``label``."""
        frame_ids = tuple(frame_ids)
        if frame_ids == self.frame_ids:
            return self
        where = {f: i for i, f in enumerate(self.frame_ids)}
        missing = [f for f in frame_ids if f not in where]
        if missing:
            raise UserError(f"{label} lacks {len(missing)} listed frame(s), e.g. {missing[:3]}")
        index = [where[f] for f in frame_ids]
        return Track(
            frame_ids,
            self.masks[index],
            None if self.scores is None else self.scores[index],
            None if self.probs is None else self.probs[index],
        )

    def with_scores(self, scores: Sequence[float] | np.ndarray | None) -> Track:
        return Track(self.frame_ids, self.masks, scores, self.probs)

    def resized(self, size: tuple[int, int]) -> Track:
        """The track at ``(H, W)``: nearest neighbour for masks, bilinear for probabilities."""
        if size == self.size:
            return self
        H, W = size
        masks = np.stack(
            [
                cv2.resize(m.view(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST)
                for m in self.masks
            ]
        ).view(bool)
        probs = None
        if self.probs is not None:
            probs = np.stack(
                [
                    cv2.resize(p.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
                    for p in self.probs
                ]
            ).astype(self.probs.dtype)
        return Track(self.frame_ids, masks, self.scores, probs)
