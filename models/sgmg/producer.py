"""SgMg as a pipeline producer (:class:`models.common.producer.Producer`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from models.common.producer import ExpressionResult, TokenizedText
from models.common.rvos_inference import prepare_frames, resized_size
from models.sgmg.inference import predict_video
from models.sgmg.model import SgMg


@dataclass(frozen=True)
class SgMgProtocol:
    """Resize rule and clip policy of a benchmark.

    Attributes:
        short_side: frames resized so that their short side is this (360 released).
        max_size: cap on the long side (None: no cap, as the official scripts).
        clip_length: frames per forward pass (None: the whole video).
    """

    short_side: int = 360
    max_size: int | None = None
    clip_length: int | None = None


PROTOCOLS: dict[str, SgMgProtocol] = {
    "ytvos": SgMgProtocol(360, None, None),
    # no official SgMg MeViS script: the Ref-YouTube-VOS rule (whole video, short side 360)
    "mevis": SgMgProtocol(360, None, None),
    "davis": SgMgProtocol(360, None, 36),
}


class SgMgProducer:
    """Runs SgMg's protocol on a video for all of its expressions.

    Args:
        model: an SgMg network (put in eval mode here).
        protocol: a :class:`SgMgProtocol` or a name in :data:`PROTOCOLS`.
        frame_chunk, expression_chunk: memory bounds (results do not depend on them).
        probs_dtype: dtype of the emitted probabilities.
    """

    def __init__(
        self,
        model: SgMg,
        protocol: SgMgProtocol | str = "ytvos",
        *,
        frame_chunk: int = 36,
        expression_chunk: int = 4,
        probs_dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(protocol, str):
            if protocol not in PROTOCOLS:
                raise ValueError(f"unknown protocol {protocol!r}; known: {sorted(PROTOCOLS)}")
            protocol = PROTOCOLS[protocol]
        self.model = model.eval()
        self.protocol = protocol
        self.frame_chunk = frame_chunk
        self.expression_chunk = expression_chunk
        self.probs_dtype = probs_dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def segment_video(
        self, frames: torch.Tensor, text: TokenizedText
    ) -> Iterator[ExpressionResult]:
        """See :meth:`models.common.producer.Producer.segment_video`."""
        if len(text) == 0:
            return
        H, W = frames.shape[-2:]
        p = self.protocol
        size = resized_size(H, W, p.short_side, p.max_size)
        device = self.device
        x = prepare_frames(frames.to(device), size)
        encoded = self.model.encode_text(text.input_ids.to(device), text.attention_mask.to(device))
        predictions = predict_video(
            self.model,
            x,
            encoded,
            (H, W),
            clip_length=p.clip_length,
            frame_chunk=self.frame_chunk,
            expression_chunk=self.expression_chunk,
            probs_dtype=self.probs_dtype,
        )
        for index, pred in enumerate(predictions):
            yield ExpressionResult(index, pred.probs.cpu(), pred.scores.cpu())
