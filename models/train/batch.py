"""The training batch the RVOS models consume (tensors only; built by pipeline/training)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ClipBatch:
    """B clips of T frames; each clip has one or more expressions (multi-object training).

    Attributes:
        frames: B x T x 3 x Hp x Wp float32 normalised, zero-padded at the bottom/right.
        image_sizes: B x 2 int64 (h, w) before padding.
        input_ids, attention_mask: X x L token ids, X = sum(expression_counts), clip-major.
        masks: X x T x Hp x Wp float32 ground truth of each expression.
        boxes: X x T x 4 normalised cxcywh (zeros where the object is invisible).
        valid: X x T bool, frames where the referred object is visible.
        expression_counts: B, expressions of each clip (all 1 for single-object training).
        texts: the expressions as fed (after any flip), for logs.
    """

    frames: torch.Tensor
    image_sizes: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor
    valid: torch.Tensor
    expression_counts: list[int]
    texts: list[str] = field(default_factory=list)

    @property
    def num_clips(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])
