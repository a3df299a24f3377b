"""Frame and mask preprocessing of the official AOT evaluator, on tensors.

Size rule (aot-benchmark ``dataloaders/video_transforms.py::MultiRestrictSize``), per test-time
scale s: cap the short edge (if set), cap the long edge (1040 for the default
``--max_resolution 624``), multiply by s and truncate with ``int()``, then round each side with
numpy's half-to-even rounding to ``16k + 1`` (CNN encoders, ``align_corners=True``) or ``16k``
(Swin). Images are resized bicubically (the official cv2 INTER_CUBIC on float32, unclipped;
torch's bicubic with ``align_corners=False`` agrees to ~1e-3 grey levels), scaled to [0, 1] and
normalised with the ImageNet mean / std. Labels are resized with ``nearest``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ResizeRule:
    """How the evaluator sizes the network input.

    Attributes:
        max_long_edge: long-edge cap before the scale (None: no cap). 1040 is the official
            default (``--max_resolution`` 624 * 800 / 480).
        max_short_edge: short-edge cap (None in the official single-scale and challenge setups).
        stride: the network stride (16).
    """

    max_long_edge: int | None = 1040
    max_short_edge: int | None = None
    stride: int = 16

    def network_size(
        self, height: int, width: int, scale: float = 1.0, align_corners: bool = True
    ) -> tuple[int, int]:
        """The network input (H', W') for an ``height x width`` frame at ``scale``."""
        h, w = float(height), float(width)
        if self.max_short_edge is not None and min(h, w) > self.max_short_edge:
            ratio = self.max_short_edge / min(h, w)
            h, w = h * ratio, w * ratio
        if self.max_long_edge is not None and max(h, w) > self.max_long_edge:
            ratio = self.max_long_edge / max(h, w)
            h, w = h * ratio, w * ratio
        sizes = []
        for side in (int(h * scale), int(w * scale)):
            if align_corners:
                if (side - 1) % self.stride != 0:
                    side = int(np.around((side - 1) / self.stride) * self.stride + 1)
            elif side % self.stride != 0:
                side = int(np.around(side / self.stride) * self.stride)
            sizes.append(side if side > 0 else self.stride)  # only degenerate < 8 px sides
        return sizes[0], sizes[1]


def normalize_frames(frames: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``N x 3 x H x W`` uint8 RGB -> float32 network input, resized to ``size`` if it differs."""
    x = frames.float()
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``... x H x W`` integer label maps -> ``... x H' x W'`` (``nearest``, as the official)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    lead = labels.shape[:-2]
    x = labels.reshape(-1, 1, *labels.shape[-2:]).float()
    x = F.interpolate(x, size=size, mode="nearest")
    return x.reshape(*lead, *size).to(labels.dtype)


def one_hot_labels(labels: torch.Tensor, num_ids: int) -> torch.Tensor:
    """``B x H x W`` ids in [0, num_ids) -> ``B x num_ids x H x W`` float one-hot."""
    return F.one_hot(labels.long(), num_ids).permute(0, 3, 1, 2).float()
