"""The seam between an RVOS model and the pipeline: what a producer takes and gives.

The pipeline reads a video's frames and tokenises its expressions; a producer (one per model
family, e.g. ``models.sgmg.producer.SgMgProducer``) runs the model's own inference protocol
(resize rule, clip policy, query selection) and returns, per expression, mask probabilities at
the original frame size and per-frame confidence scores. Producers should encode the video once
for all of its expressions where the model allows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class TokenizedText:
    """Tokenised expressions of one video.

    Attributes:
        input_ids: E x L int64 token ids (the model's own vocabulary, padded).
        attention_mask: E x L int64, 1 on real tokens, 0 on padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.input_ids.shape != self.attention_mask.shape or self.input_ids.ndim != 2:
            raise ValueError(
                f"input_ids {tuple(self.input_ids.shape)} and attention_mask "
                f"{tuple(self.attention_mask.shape)} must both be E x L"
            )

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def select(self, index: int) -> TokenizedText:
        """Expression ``index`` alone, trimmed to its real length (as official code feeds it)."""
        length = max(int(self.attention_mask[index].sum()), 1)
        return TokenizedText(
            self.input_ids[index : index + 1, :length],
            self.attention_mask[index : index + 1, :length],
        )


@dataclass(frozen=True)
class ExpressionResult:
    """One expression's output over the whole video.

    Attributes:
        index: position of the expression in the :class:`TokenizedText` batch.
        probs: T x H x W float (float32 or float16) in [0, 1] at the original frame size.
        scores: T float32 per-frame confidence (the model's own definition, e.g. sigmoid of the
            selected query's class logit), used to pick key frames.
    """

    index: int
    probs: torch.Tensor
    scores: torch.Tensor


@runtime_checkable
class Producer(Protocol):
    """An RVOS model wrapped with its inference protocol."""

    def segment_video(
        self, frames: torch.Tensor, text: TokenizedText
    ) -> Iterator[ExpressionResult]:
        """Segment every expression in ``text`` on ``frames``.

        Args:
            frames: T x 3 x H x W uint8 RGB at the original size.
            text: the video's expressions, tokenised for this model.

        Yields:
            One :class:`ExpressionResult` per expression, in batch order.
        """
        ...
