"""UNINEXT's RVOS test-time protocol around the network: resize in, select, resize out.

* In: detectron2 ``ResizeShortestEdge`` (shortest edge ``min_size``, longest at most
  ``max_size``, rounded half up; PIL bilinear on uint8 frames).
* Select: per frame independently, the query slot with the highest
  sqrt(sigmoid(cls) * sigmoid(iou)) (``UNINEXT_VID.inference_rvos``).
* Out: that slot's stride-4 logits are resized bilinearly x4 (``align_corners=False``), passed
  through the sigmoid, cropped to the unpadded input, then resized to the original frame size
  with **nearest** interpolation: upsample -> sigmoid -> crop -> nearest, in this order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def network_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(h, w) after ``ResizeShortestEdge(min_size, max_size)``."""
    scale = min_size / min(height, width)
    if height < width:
        new_h, new_w = float(min_size), scale * width
    else:
        new_h, new_w = scale * height, float(min_size)
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """T x 3 x H x W uint8 -> T x 3 x h x w uint8 with PIL bilinear (detectron2's resize)."""
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    h, w = size
    if tuple(frames.shape[-2:]) == (h, w):
        return frames
    out = []
    for frame in frames:
        image = Image.fromarray(frame.permute(1, 2, 0).cpu().numpy())
        resized = np.asarray(image.resize((w, h), Image.Resampling.BILINEAR))
        out.append(torch.from_numpy(resized.copy()).permute(2, 0, 1))
    return torch.stack(out)


def probabilities_at_original_size(
    logits: torch.Tensor, input_size: tuple[int, int], orig_size: tuple[int, int]
) -> torch.Tensor:
    """Stride-4 mask logits of the padded input -> probabilities at the original frame size.

    Args:
        logits: ... x h4 x w4 (any leading dims).
        input_size: (h, w) of the unpadded network input.
        orig_size: (H, W) of the original frame.

    Returns:
        ... x H x W float in [0, 1].
    """
    lead = logits.shape[:-2]
    h4, w4 = logits.shape[-2:]
    x = logits.reshape(-1, 1, h4, w4)
    x = F.interpolate(x, size=(h4 * 4, w4 * 4), mode="bilinear", align_corners=False).sigmoid()
    x = x[:, :, : input_size[0], : input_size[1]]
    x = F.interpolate(x, size=tuple(orig_size), mode="nearest")
    return x.reshape(*lead, *orig_size)
