"""Clip-level query matching of the RVOS models (SgMg / ReferFormer ``matcher.py``).

Called "Hungarian" upstream, but with one referred object per clip it is an argmin over the
queries of a weighted cost: focal class cost averaged over the visible frames, L1 and GIoU box
costs averaged over every frame, focal and dice mask costs over the whole clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.train.boxes import box_cxcywh_to_xyxy, generalized_box_iou


@dataclass(frozen=True)
class MatchCosts:
    """Cost weights (SgMg's ``set_cost_*``)."""

    cls: float = 2.0
    bbox: float = 5.0
    giou: float = 2.0
    mask: float = 2.0
    dice: float = 5.0


def _focal_cost(mask_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Q x P logits vs P targets -> Q mean focal cost."""
    prob = mask_logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(
        mask_logits, target.expand_as(mask_logits), reduction="none"
    )
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha_t = 0.25 * target + 0.75 * (1 - target)
    return (alpha_t * ce * (1 - p_t) ** 2).mean(1)


def _dice_coef(mask_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = mask_logits.sigmoid()
    return (2 * (prob * target).sum(1) + 1) / (prob.sum(1) + target.sum() + 1)


@torch.no_grad()
def match_clip(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    mask_logits: torch.Tensor,
    target_boxes: torch.Tensor,
    target_masks: torch.Tensor,
    valid: torch.Tensor,
    costs: MatchCosts = MatchCosts(),
) -> int:
    """The query that best explains one clip's referred object.

    Args:
        logits: T x Q class logits.
        boxes: T x Q x 4 cxcywh.
        mask_logits: T x Q x h x w at the matching stride.
        target_boxes: T x 4 cxcywh.
        target_masks: T x h x w (same stride as ``mask_logits``).
        valid: T bool, frames where the object is visible.
    """
    T, Q = logits.shape
    cost = torch.zeros(Q, device=logits.device)
    if valid.any():
        prob = logits[valid].sigmoid()  # V x Q
        pos = 0.25 * (1 - prob) ** 2 * -(prob + 1e-8).log()
        neg = 0.75 * prob**2 * -(1 - prob + 1e-8).log()
        cost = cost + costs.cls * (pos - neg).mean(0)
    tgt_boxes = target_boxes.to(boxes)
    l1 = (boxes - tgt_boxes[:, None]).abs().sum(-1).mean(0)
    giou = torch.stack(
        [
            generalized_box_iou(
                box_cxcywh_to_xyxy(boxes[t]), box_cxcywh_to_xyxy(tgt_boxes[t : t + 1])
            )[:, 0]
            for t in range(T)
        ]
    ).mean(0)
    flat = mask_logits.transpose(0, 1).reshape(Q, -1)
    target = target_masks.reshape(1, -1).to(flat)
    cost = cost + costs.bbox * l1 - costs.giou * giou
    cost = cost + costs.mask * _focal_cost(flat, target) - costs.dice * _dice_coef(flat, target)
    return int(torch.argmin(cost))
