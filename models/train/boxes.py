"""Box utilities (DETR ``util/box_ops.py`` semantics): cxcywh <-> xyxy, IoU, generalized IoU."""

from __future__ import annotations

import torch


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """... x 4 (cx, cy, w, h) -> ... x 4 (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """... x 4 (x0, y0, x1, y1) -> ... x 4 (cx, cy, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise IoU and union of N x 4 and M x 4 xyxy boxes: (N x M, N x M)."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None] - inter
    return inter / union, union


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise generalized IoU of N x 4 and M x 4 xyxy boxes (degenerate boxes allowed)."""
    if not ((a[:, 2:] >= a[:, :2]).all() and (b[:, 2:] >= b[:, :2]).all()):
        raise ValueError("boxes must be xyxy with x1 >= x0 and y1 >= y0")
    iou, union = box_iou(a, b)
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    area = (rb - lt).clamp(min=0).prod(-1)
    return iou - (area - union) / area


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """T x H x W bool -> T x 4 normalised cxcywh boxes of each mask; empty masks give zeros."""
    T, H, W = masks.shape
    boxes = torch.zeros(T, 4)
    for t in range(T):
        ys, xs = torch.nonzero(masks[t], as_tuple=True)
        if ys.numel() == 0:
            continue
        x0, x1 = xs.min().item(), xs.max().item() + 1
        y0, y1 = ys.min().item(), ys.max().item() + 1
        boxes[t] = torch.tensor(
            [(x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H]
        )
    return boxes
