"""The family's producer: each model's own inference protocol behind :class:`Producer`.

Protocols (official inference scripts; models.md sections 2.2, 3.2, 4.2; datasets.md 3.3):

==============  =====================  =====================  =====================
dataset         ReferFormer            MUTR                   SOC
==============  =====================  =====================  =====================
Ref-YTVOS       short 360, whole       short 432, whole       short 360 max 640,
                video                  video                  whole video
Ref-DAVIS17     short 360, clips 36    short 432, clips 64    short 360 max 640,
                                                              clips 36
MeViS           as Ref-YTVOS (no official script; whole video)
==============  =====================  =====================  =====================

In every protocol the query is chosen per clip by its frame-averaged score
(:func:`models.common.rvos_inference.select_query`), its stride-4 logits are resized straight
to the original frame size, and the per-frame score is that query's sigmoid score. The winners
ran all three at short side 360 (``short_side`` overrides the table).

Efficiency: the text-independent part (Video Swin, positions, projections) runs once per clip
and serves every expression; expressions are decoded ``expression_batch`` at a time. With
several clips and several expression groups, a clip is re-encoded for each group, so memory
stays bounded by one clip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from models.common.producer import ExpressionResult, TokenizedText
from models.common.rvos_inference import (
    clip_bounds,
    logits_to_size,
    prepare_frames,
    resized_size,
    select_query,
)
from models.family.model import ReferFormer
from models.shared.typed import replace_fields

DATASETS = ("ref-youtube-vos", "ref-davis17", "mevis")


@dataclass(frozen=True)
class Protocol:
    """An inference protocol.

    Attributes:
        short_side: frames resized so that their short side is this.
        max_size: cap on the long side (SOC), or None.
        clip_length: frames per clip (None: the whole video is one clip).
        expression_batch: expressions decoded together.
    """

    short_side: int
    max_size: int | None = None
    clip_length: int | None = None
    expression_batch: int = 8


_YTVOS = {
    "referformer": Protocol(360),
    "mutr": Protocol(432),
    "soc": Protocol(360, 640),
}
_DAVIS_CLIPS = {"referformer": 36, "mutr": 64, "soc": 36}


def protocol_for(model: str, dataset: str = "ref-youtube-vos", **overrides: object) -> Protocol:
    """The official protocol of ``model`` on ``dataset``, with ``overrides`` applied.

    Args:
        model: ``referformer``, ``mutr`` or ``soc``.
        dataset: ``ref-youtube-vos``, ``ref-davis17`` or ``mevis``.
        overrides: :class:`Protocol` fields (e.g. ``short_side=360`` as the winners ran MUTR).
    """
    if model not in _YTVOS:
        raise ValueError(f"unknown model {model!r}; known: {sorted(_YTVOS)}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {DATASETS}")
    protocol = _YTVOS[model]
    if dataset == "ref-davis17":
        protocol = replace(protocol, clip_length=_DAVIS_CLIPS[model])
    return replace_fields(protocol, overrides, where=f"{model} protocol options")


class FamilyProducer:
    """Segments every expression of a video with a ReferFormer, MUTR or SOC network.

    Args:
        model: the network (put in eval mode here).
        protocol: resize rule, clip length, expression batch.
        probs_dtype: dtype of the returned probabilities (float16 halves memory).
    """

    def __init__(
        self,
        model: ReferFormer,
        protocol: Protocol,
        *,
        probs_dtype: torch.dtype = torch.float32,
    ) -> None:
        if protocol.expression_batch < 1:
            raise ValueError("expression_batch must be at least 1")
        self.model = model.eval()
        self.protocol = protocol
        self.probs_dtype = probs_dtype
        self.encoded_clips = 0  # Video Swin passes, for tests and benchmarks

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        p = self.protocol
        return resized_size(height, width, p.short_side, p.max_size)

    @torch.inference_mode()
    def segment_video(
        self, frames: torch.Tensor, text: TokenizedText
    ) -> Iterator[ExpressionResult]:
        """Segment every expression of ``text`` on ``frames`` (T x 3 x H x W uint8)."""
        if frames.ndim != 4 or frames.dtype != torch.uint8:
            raise ValueError(f"frames must be T x 3 x H x W uint8, got {tuple(frames.shape)}")
        T, _, H, W = frames.shape
        size = self.network_size(H, W)
        clips = clip_bounds(T, self.protocol.clip_length)
        step = self.protocol.expression_batch
        groups = [list(range(s, min(s + step, len(text)))) for s in range(0, len(text), step)]
        cached = None
        for group in groups:
            per_expression: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {
                e: ([], []) for e in group
            }
            for start, end in clips:
                if cached is None or len(clips) > 1:
                    x = prepare_frames(frames[start:end].to(self.device), size)
                    video = self.model.encode_video(x[None].to(self._dtype))
                    self.encoded_clips += 1
                    cached = video if len(clips) == 1 else None
                else:
                    video = cached
                for e, (probs, scores) in self._decode(video, text, group, (H, W)).items():
                    per_expression[e][0].append(probs)
                    per_expression[e][1].append(scores)
            for e in group:
                probs, scores = per_expression[e]
                yield ExpressionResult(e, torch.cat(probs), torch.cat(scores))

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _decode(
        self, video, text: TokenizedText, group: list[int], orig: tuple[int, int]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        length = max(max(int(text.attention_mask[e].sum()) for e in group), 1)
        ids = text.input_ids[group, :length].to(self.device)
        mask = text.attention_mask[group, :length].to(self.device)
        out = self.model.decode(video, self.model.encode_text(ids, mask))
        results = {}
        for i, e in enumerate(group):
            chosen = select_query(out.pred_logits[0, i])
            logits = logits_to_size(out.pred_masks[0, i, :, chosen.index], orig)
            results[e] = (logits.sigmoid().to(self.probs_dtype).cpu(), chosen.frame_scores.cpu())
        return results
