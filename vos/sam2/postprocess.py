"""The video predictor's optional post-processing of low-resolution logits.

``fill_holes``: background components (logits <= 0, 8-connectivity) of at most ``max_area``
pixels become foreground with logit 0.1 (``sam2/utils/misc.py::fill_holes_in_mask_scores``,
which needs the ``sam2._C`` CUDA kernel and is skipped upstream when it is absent). Here in pure
PyTorch: ``max_area`` rounds of 3 x 3 max-pooling of pixel labels inside the background give
every component of at most ``max_area`` pixels a single label; a label region is a whole
component exactly when no neighbouring background pixel carries another label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HOLE_FILL_LOGIT = 0.1


def small_background_components(background: torch.Tensor, max_area: int) -> torch.Tensor:
    """N x 1 x h x w bool background -> the same shape, True on the pixels of 8-connected
    background components of at most ``max_area`` pixels."""
    n, _, h, w = background.shape
    ids = torch.arange(1, h * w + 1, device=background.device, dtype=torch.float32)
    labels = torch.where(background, ids.view(1, 1, h, w), 0.0)
    for _ in range(max(max_area, 1)):
        labels = torch.where(background, F.max_pool2d(labels, 3, stride=1, padding=1), 0.0)
    big = float(h * w + 1)
    neighbour_max = F.max_pool2d(labels, 3, stride=1, padding=1)
    neighbour_min = -F.max_pool2d(-torch.where(background, labels, big), 3, stride=1, padding=1)
    settled = (neighbour_max == labels) & (neighbour_min == labels)
    flat = labels.long().view(n, -1)
    offsets = torch.arange(n, device=flat.device)[:, None] * (h * w + 1)
    index = (flat + offsets).view(-1)
    area = torch.bincount(index, minlength=n * (h * w + 1))
    unsettled = torch.bincount(index, weights=(~settled).view(-1).float(), minlength=area.numel())
    small = (area <= max_area) & (unsettled == 0)
    return background & small[index].view(n, 1, h, w)


def fill_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """N x 1 x h x w logits with small background holes set to 0.1 (``max_area`` > 0)."""
    holes = small_background_components(logits <= 0, max_area)
    return torch.where(holes, torch.full_like(logits, HOLE_FILL_LOGIT), logits)
