"""UNINEXT as a stage-II producer: per-frame top-1 query, probabilities, per-frame scores.

The official RVOS protocol (``UNINEXT_VID`` on ``rvos-refytb-val``) runs every frame on its
own: ``ResizeShortestEdge`` to the network size, the expression's BERT features (computed once
per expression), fusion + transformer, then the slot with the highest
sqrt(sigmoid(cls) * sigmoid(iou)) is kept, independently per frame. The winners' stage II keeps
the **probabilities** of that slot at the original size (``mask_logits`` of their dumps holds
sigmoid values) and the frame's top score (lsvos2023.md section 2).

Early fusion happens after the backbone and the input projections, so a frame's visual features
serve every expression: they are computed once per frame and cached within ``cache_bytes``;
frames beyond the budget are recomputed for each expression (memory stays bounded on long
videos). Only the selected slot's mask is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from models.common.producer import ExpressionResult, TokenizedText
from models.uninext.model import UninextModel, VisualFeatures
from models.uninext.postprocess import network_size, probabilities_at_original_size, resize_frames


class FrameFeatureCache:
    """Visual features of a video's frame batches, kept while they fit in ``budget`` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.entries: dict[int, VisualFeatures] = {}
        self.computed = 0  # frame batches encoded (cached or not), for tests and benchmarks

    def get(self, start: int, compute: Callable[[], VisualFeatures]) -> VisualFeatures:
        if start in self.entries:
            return self.entries[start]
        features = compute()
        self.computed += 1
        size = features.nbytes()
        if self.used + size <= self.budget:
            self.entries[start] = features
            self.used += size
        return features


class UninextProducer:
    """Segments every expression of a video with a :class:`UninextModel`.

    Args:
        model: the network (put in eval mode here).
        frame_batch: frames decoded together (same expression); 1 matches the official loop.
        cache_bytes: budget for cached per-frame visual features (0 disables the cache).
        probs_dtype: dtype of the returned probabilities (float32, or float16 to halve memory).
    """

    def __init__(
        self,
        model: UninextModel,
        *,
        frame_batch: int = 1,
        cache_bytes: int = 2 << 30,
        probs_dtype: torch.dtype = torch.float32,
    ) -> None:
        if frame_batch < 1:
            raise ValueError("frame_batch must be at least 1")
        self.model = model.eval()
        self.frame_batch = frame_batch
        self.cache_bytes = cache_bytes
        self.probs_dtype = probs_dtype
        self.last_cache: FrameFeatureCache | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def segment_video(
        self, frames: torch.Tensor, text: TokenizedText
    ) -> Iterator[ExpressionResult]:
        """Segment every expression in ``text`` on ``frames``.

        Args:
            frames: T x 3 x H x W uint8 RGB at the original size.
            text: the video's expressions, tokenised for this model's BERT.

        Yields:
            Per expression: T x H x W probabilities at the original size and T scores (the
            selected slot's sqrt(sigmoid(cls) * sigmoid(iou)) in each frame).
        """
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(
                f"frames must be T x 3 x H x W uint8, got {tuple(frames.shape)} {frames.dtype}"
            )
        if len(text) == 0:
            return
        T, _, H, W = frames.shape
        size = network_size(H, W, self.model.min_size, self.model.max_size)
        net_frames = resize_frames(frames, size)
        cache = FrameFeatureCache(self.cache_bytes)
        self.last_cache = cache
        device = self.device
        for index in range(len(text)):
            one = text.select(index)
            features = self.model.encode_text(
                one.input_ids.to(device), one.attention_mask.to(device)
            )
            probs = torch.empty(T, H, W, dtype=self.probs_dtype)
            scores = torch.empty(T, dtype=torch.float32)
            for start in range(0, T, self.frame_batch):
                stop = min(start + self.frame_batch, T)
                visual = cache.get(
                    start,
                    lambda a=start, b=stop: self.model.encode_images(net_frames[a:b].to(device)),
                )
                preds = self.model.decode(visual, features.repeat_for(0, stop - start))
                frame_scores = preds.final.scores
                best = frame_scores.argmax(dim=1, keepdim=True)  # first maximum, as topk(1)
                logits = self.model.mask_logits(preds, best)[:, 0]
                probs[start:stop] = probabilities_at_original_size(logits, size, (H, W)).to(
                    device="cpu", dtype=self.probs_dtype
                )
                scores[start:stop] = frame_scores.gather(1, best)[:, 0].float().cpu()
            yield ExpressionResult(index=index, probs=probs, scores=scores)
