"""Losses of the query-based RVOS models (ReferFormer / SgMg ``criterion.py``, ``segmentation.py``).

One referred object per clip: a single query is matched for the whole clip
(:mod:`models.train.matcher`); the class loss is a sigmoid focal loss over every (frame, query)
with the matched query positive on the frames where the object is visible; boxes (L1 + GIoU)
and masks (sigmoid focal + dice) are supervised on the matched query. Normalisation by
``num_boxes`` = visible frames in the batch, as the reference code does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.train.boxes import box_cxcywh_to_xyxy, generalized_box_iou


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    num_boxes: float,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> torch.Tensor:
    """RetinaNet focal loss: rows x elements -> mean over elements, sum over rows / num_boxes."""
    prob = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_boxes


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_boxes: float) -> torch.Tensor:
    """1 - (2|p t| + 1) / (|p| + |t| + 1) per row (p = sigmoid), summed / num_boxes."""
    p = inputs.sigmoid().flatten(1)
    t = targets.flatten(1)
    loss = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return loss.sum() / num_boxes


def subsample_targets(masks: torch.Tensor, stride: int) -> torch.Tensor:
    """Targets at a prediction stride: ``masks[..., s//2::s, s//2::s]`` (the reference rule)."""
    start = stride // 2
    return masks[..., start::stride, start::stride]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (SgMg's defaults)."""

    cls: float = 2.0
    bbox: float = 5.0
    giou: float = 2.0
    mask: float = 2.0
    dice: float = 5.0


def class_loss(
    logits: torch.Tensor, matched: torch.Tensor, valid: torch.Tensor, num_boxes: float
) -> torch.Tensor:
    """Focal class loss of one decoder layer.

    Args:
        logits: B x T x Q logits (one class).
        matched: B int, the matched query of each clip.
        valid: B x T bool, frames where the referred object is visible.
    """
    target = torch.zeros_like(logits)
    B, T, _ = logits.shape
    clip = torch.arange(B, device=logits.device)[:, None].expand(B, T)
    frame = torch.arange(T, device=logits.device)[None].expand(B, T)
    query = matched[:, None].expand(B, T)
    target[clip[valid], frame[valid], query[valid]] = 1.0
    flat = logits.reshape(B, -1, 1)
    return sigmoid_focal_loss(flat, target.reshape(B, -1, 1), num_boxes) * flat.shape[1]


def box_losses(
    boxes: torch.Tensor, target_boxes: torch.Tensor, num_boxes: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 and GIoU of the matched query's boxes on every frame: B x T x 4 each."""
    src = boxes.reshape(-1, 4)
    tgt = target_boxes.reshape(-1, 4).to(src)
    l1 = F.l1_loss(src, tgt, reduction="none").sum() / num_boxes
    giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt)))
    return l1, (1 - giou).sum() / num_boxes


def mask_losses(
    mask_logits: torch.Tensor, target_masks: torch.Tensor, num_boxes: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Focal and dice of the matched query's masks, per clip over all its frames.

    Args:
        mask_logits: B x T x h x w.
        target_masks: B x T x h x w (already at the prediction stride).
    """
    src = mask_logits.flatten(1)
    tgt = target_masks.flatten(1).to(src)
    return sigmoid_focal_loss(src, tgt, num_boxes), dice_loss(src, tgt, num_boxes)
