"""The inference protocol pieces shared by the query-based RVOS models (ReferFormer, MUTR, SOC).

- :func:`resized_size`: the resize rule of the official scripts: torchvision ``T.Resize(short)``
  (ReferFormer 360, MUTR 432, no maximum) and DETR's ``RandomResize([short], max_size)`` (SOC
  360 / 640), which give the same size when no maximum applies.
- :func:`prepare_frames`: resize (bilinear, antialiased like PIL, values rounded back to 8 bits as
  PIL does) and ImageNet normalisation.
- :func:`select_query`: the Ref-YouTube-VOS rule: sigmoid of the class logits, averaged over the
  frames, argmax over the queries (first index on ties), used for every frame; the per-frame
  score is that query's sigmoid score.
- :func:`logits_to_size`: the selected query's stride-4 logits resized straight to the original
  frame size (bilinear, ``align_corners=False``).
- :func:`clip_bounds`: fixed-length clips (Ref-DAVIS17: 36 frames for ReferFormer/SOC, 64 for
  MUTR, chosen by the official scripts because of the CUDA op's batch limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_size(
    height: int, width: int, short_side: int, max_size: int | None = None
) -> tuple[int, int]:
    """(h, w) after resizing the short side to ``short_side`` (long side truncated, as int()).

    With ``max_size`` the short side shrinks first so that the long side stays within it
    (DETR's ``get_size_with_aspect_ratio``: ``round(max_size * short / long)``).
    """
    if height <= 0 or width <= 0 or short_side <= 0:
        raise ValueError(f"bad sizes: frame {height}x{width}, short side {short_side}")
    size = short_side
    short, long = min(height, width), max(height, width)
    if max_size is not None and long / short * size > max_size:
        size = round(max_size * short / long)
    if short == size:
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def prepare_frames(
    frames: torch.Tensor,
    size: tuple[int, int],
    *,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Resize and normalise a video.

    Args:
        frames: T x 3 x H x W uint8 RGB.
        size: (h, w) network input size.

    Returns:
        T x 3 x h x w ``dtype``, ``(x / 255 - mean) / std``.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(
            f"frames must be T x 3 x H x W uint8, got {tuple(frames.shape)} {frames.dtype}"
        )
    x = frames.to(torch.float32)
    if tuple(frames.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = x.round().clamp(0, 255)
    x = x / 255.0
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return ((x - m) / s).to(dtype)


@dataclass(frozen=True)
class QuerySelection:
    """The query chosen for a whole clip.

    Attributes:
        index: the selected query.
        mean_scores: Q float, frame-averaged sigmoid score of each query.
        frame_scores: T float, the selected query's sigmoid score in each frame.
    """

    index: int
    mean_scores: torch.Tensor
    frame_scores: torch.Tensor


def select_query(logits: torch.Tensor) -> QuerySelection:
    """Pick one query for the clip by its frame-averaged score.

    Args:
        logits: T x Q class logits (one class).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be T x Q, got {tuple(logits.shape)}")
    scores = logits.float().sigmoid()
    mean = scores.mean(0)
    index = int(torch.argmax(mean))  # first maximal index on ties
    return QuerySelection(index, mean, scores[:, index])


def logits_to_size(mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """T x h x w logits -> T x H x W logits, bilinear, ``align_corners=False``."""
    return F.interpolate(
        mask_logits[:, None].float(), size=size, mode="bilinear", align_corners=False
    )[:, 0]


def clip_bounds(num_frames: int, clip_length: int | None) -> list[tuple[int, int]]:
    """[start, end) of consecutive clips of ``clip_length`` frames (one clip when None)."""
    if num_frames <= 0:
        raise ValueError("a video needs at least one frame")
    if clip_length is None or clip_length >= num_frames:
        return [(0, num_frames)]
    if clip_length <= 0:
        raise ValueError(f"clip_length must be positive, got {clip_length}")
    return [(s, min(s + clip_length, num_frames)) for s in range(0, num_frames, clip_length)]
