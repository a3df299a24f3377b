"""Key-frame rules of a vote: which frame of a fused group a propagation starts from.

A vote chooses one key frame per expression by one of :data:`KEY_FRAME_RULES`, the first
maximum of a per-frame value (``np.argmax``):

* ``"score"`` — the named source's per-frame scores (the challenge's rule, lsvos2023.md
  section 5; computed in :mod:`pipeline.core.vote`, with the source's recorded key frame where
  it has no scores);
* ``"mean_probability"`` — the fused probability (the weighted mean of the voters'
  probabilities) averaged over the fused mask's pixels of the frame (:func:`mean_probability`);
* ``"agreement"`` — the mean pairwise IoU of the voters' binary masks on the frame
  (:class:`PairwiseAgreement`).

The last two are per group of pooled expressions, so both expressions of a pair share their
key frame. This module stands apart from :mod:`pipeline.core.keyframes` (the key-frame file
schema, which every node kind imports) so that only the vote's code version follows it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

KeyFrameRule = Literal["score", "mean_probability", "agreement"]
KEY_FRAME_RULES: tuple[str, ...] = ("score", "mean_probability", "agreement")


def mean_probability(
    probability_sum: np.ndarray, total_weight: float, fused: np.ndarray
) -> np.ndarray:
    """Per frame, the mean of ``probability_sum / total_weight`` over the pixels of ``fused``.

    ``probability_sum``: ``T x H x W`` float, the weighted sum of the voters' probabilities;
    ``total_weight``: the sum of their weights (so the ratio is the weighted mean, in [0, 1]);
    ``fused``: ``T x H x W`` bool, the fused mask. Returns ``(T,)`` float32; a frame with an
    empty fused mask gets 0. Sums are taken in float64, frame by frame.
    """
    if probability_sum.shape != fused.shape or probability_sum.ndim != 3:
        raise ValueError(f"probabilities {probability_sum.shape} and mask {fused.shape} differ")
    values = np.zeros(fused.shape[0], np.float32)
    for t, (probs, mask) in enumerate(zip(probability_sum, fused, strict=True)):
        area = int(np.count_nonzero(mask))
        if area:
            values[t] = probs[mask].sum(dtype=np.float64) / (area * float(total_weight))
    return values


class PairwiseAgreement:
    """The mean pairwise IoU of masks added one at a time, frame by frame.

    :meth:`add` takes one voter's ``T x H x W`` bool masks; each is kept bit-packed (one bit a
    pixel) for the pairs it still has to form. IoU of two masks on a frame: ``|A & B| /
    |A | B|``; two empty masks agree on no object, IoU 0 (an empty frame is a poor key frame).
    """

    def __init__(self) -> None:
        self._packed: list[tuple[np.ndarray, np.ndarray]] = []  # (bits, per-frame area)
        self._iou_sum: np.ndarray | None = None
        self._pairs = 0

    def add(self, masks: np.ndarray) -> None:
        """Count the pairs of ``masks`` (``T x H x W`` bool) with every mask added before."""
        masks = np.asarray(masks, bool)
        if masks.ndim != 3:
            raise ValueError(f"masks must be T x H x W, got {masks.shape}")
        bits = np.packbits(masks.reshape(masks.shape[0], -1), axis=1)
        area = np.bitwise_count(bits).sum(axis=1, dtype=np.int64)
        if self._iou_sum is None:
            self._iou_sum = np.zeros(masks.shape[0], np.float64)
        elif bits.shape != self._packed[0][0].shape:
            raise ValueError(f"masks {masks.shape} differ in shape from those added before")
        for other_bits, other_area in self._packed:
            inter = np.bitwise_count(bits & other_bits).sum(axis=1, dtype=np.int64)
            union = area + other_area - inter
            self._iou_sum += np.divide(
                inter, union, out=np.zeros_like(self._iou_sum), where=union > 0
            )
            self._pairs += 1
        self._packed.append((bits, area))

    def per_frame(self) -> np.ndarray:
        """``(T,)`` float32 mean IoU over all pairs added; at least two masks are needed."""
        if self._iou_sum is None or self._pairs == 0:
            raise ValueError("agreement needs the masks of at least two voters")
        return (self._iou_sum / self._pairs).astype(np.float32)
