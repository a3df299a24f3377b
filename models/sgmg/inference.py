"""SgMg's inference protocols: Ref-YouTube-VOS / MeViS (whole video) and Ref-DAVIS17 (clips).

Per clip (``inference_ytvos.py`` / ``inference_davis.py`` of bo-miao/SgMg): frames resized
(short side 360, no maximum) and normalised, zero-padded to multiples of 16 inside the model;
for each expression the query with the highest frame-averaged sigmoid score (last decoder
layer, first index on ties) is chosen *before* refinement, MSO refines that query alone, the
logits are cropped to the unpadded size, bilinearly resized to the original frame size, and
sigmoid gives the probabilities (``> 0.5`` = the official PNG).

Better than the official scripts, same numbers: the video is encoded once (Video Swin, input
projections, pre-fusion spectrum filters) for all of its expressions; expressions are decoded
in batches; past the backbone frames are independent, so decoding runs in frame chunks and
memory stays bounded on long videos. Multi-object SgMg (:mod:`models.sgmg.multi`) runs its
shared fusion and encoder once per frame chunk for all expressions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from models.common.deformable_transformer import EncoderMemory
from models.common.rvos_inference import clip_bounds, logits_to_size, select_query
from models.sgmg.model import ExpressionFeatures, SgMg, VideoFeatures, pad_video


@dataclass(frozen=True)
class ClipPrediction:
    """One expression on one clip.

    Attributes:
        query: the selected query.
        mean_scores: Q frame-averaged sigmoid scores (the selection statistic).
        frame_scores: T sigmoid scores of the selected query.
        logits: T x h x w full-resolution mask logits of the selected query (unpadded size).
    """

    query: int
    mean_scores: torch.Tensor
    frame_scores: torch.Tensor
    logits: torch.Tensor


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, max(size, 1))]


@torch.inference_mode()
def predict_clip(
    model: SgMg,
    frames: torch.Tensor,
    text: ExpressionFeatures,
    *,
    frame_chunk: int = 36,
    expression_chunk: int = 4,
) -> list[ClipPrediction]:
    """Segment every expression on one clip.

    Args:
        frames: T x 3 x h x w normalised frames at the network size (unpadded).
        text: E encoded expressions (:meth:`SgMg.encode_text`).
        frame_chunk: frames decoded at once (memory bound; results do not depend on it).
        expression_chunk: expressions decoded at once.
    """
    h, w = frames.shape[-2:]
    video = model.encode_video(pad_video(frames)[None], torch.tensor([[h, w]]))
    shared = None
    if hasattr(model, "encode_shared"):  # multi-object SgMg: one fusion/encoder for all
        shared = {
            (f0, f1): model.encode_shared(video.frames(f0, f1), text)
            for f0, f1 in _chunks(video.num_frames, frame_chunk)
        }
    results: list[ClipPrediction] = []
    for e0, e1 in _chunks(len(text), expression_chunk):
        chunk = text.select(slice(e0, e1))
        results.extend(_predict_expressions(model, video, chunk, frame_chunk, shared))
    return [
        ClipPrediction(r.query, r.mean_scores, r.frame_scores, r.logits[:, :h, :w]) for r in results
    ]


def _predict_expressions(
    model: SgMg,
    video: VideoFeatures,
    text: ExpressionFeatures,
    frame_chunk: int,
    shared: dict[tuple[int, int], EncoderMemory] | None,
) -> list[ClipPrediction]:
    E, T = len(text), video.num_frames
    last = model.num_decoder_layers - 1
    logits, patches = [], []
    for f0, f1 in _chunks(T, frame_chunk):
        extra = {} if shared is None else {"shared": shared[(f0, f1)]}
        out = model.decode(video.frames(f0, f1), text, mask_layers=[last], **extra)
        t = f1 - f0
        logits.append(out.logits[last].view(E, t, -1))
        patches.append(out.patch_logits[last].view(E, t, *out.patch_logits[last].shape[1:]))
    all_logits = torch.cat(logits, 1)  # E x T x Q
    all_patches = torch.cat(patches, 1)  # E x T x Q x 16 x h8 x w8
    results = []
    for e in range(E):
        chosen = select_query(all_logits[e])
        refined = [
            model.refine(
                all_patches[e, f0:f1, chosen.index],
                video.backbone[0][f0:f1],
                video.backbone[1][f0:f1],
            )
            for f0, f1 in _chunks(T, frame_chunk)
        ]
        results.append(
            ClipPrediction(
                chosen.index, chosen.mean_scores, chosen.frame_scores, torch.cat(refined)
            )
        )
    return results


@dataclass(frozen=True)
class VideoPrediction:
    """One expression over a whole video: probabilities at the original size and scores."""

    probs: torch.Tensor  # T x H x W
    scores: torch.Tensor  # T
    queries: list[int]  # the selected query of each clip


def predict_video(
    model: SgMg,
    frames: torch.Tensor,
    text: ExpressionFeatures,
    original_size: tuple[int, int],
    *,
    clip_length: int | None = None,
    frame_chunk: int = 36,
    expression_chunk: int = 4,
    probs_dtype: torch.dtype = torch.float32,
) -> Iterator[VideoPrediction]:
    """Every expression on a video, clip by clip (``clip_length`` None = the whole video).

    Args:
        frames: T x 3 x h x w normalised frames at the network size.
        original_size: (H, W) the probabilities are resized to.

    Yields:
        One :class:`VideoPrediction` per expression, in order.
    """
    per_clip = [
        predict_clip(
            model,
            frames[s:e],
            text,
            frame_chunk=frame_chunk,
            expression_chunk=expression_chunk,
        )
        for s, e in clip_bounds(frames.shape[0], clip_length)
    ]
    for e in range(len(text)):
        clips = [clip[e] for clip in per_clip]
        probs = torch.cat(
            [logits_to_size(c.logits, original_size).sigmoid().to(probs_dtype) for c in clips]
        )
        scores = torch.cat([c.frame_scores for c in clips]).float()
        yield VideoPrediction(probs, scores, [c.query for c in clips])
