"""Training objective of the ReferFormer / MUTR / SOC family on :class:`ClipBatch` batches.

Per head layer (every decoder layer in training, each with its own matching, as the official
``SetCriterion`` with auxiliary losses does): one query matched per clip
(:func:`models.train.matcher.match_clip` on the stride-4 masks), then the shared losses of
:mod:`models.train.losses` -- focal class loss over all (frame, query) pairs with the matched
query positive on visible frames, L1 + GIoU on its boxes, focal + dice on its stride-4 masks
(targets subsampled at ``stride // 2 :: stride``). SOC adds its text-video contrastive loss
(``vl_loss``): the video queries, scaled by 1/C, against the two-way fusion's text feature,
log-softmax over the queries, the matched query as the target.

Weights: ReferFormer / MUTR use cls 2, bbox 5, giou 2, mask 2, dice 5 (``opts.py``); SOC
cls 2, bbox 2, giou 2, mask 2, dice 5, contrastive 1 (``configs/refer_youtube_vos.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import torch

from models.family.model import ReferFormer, RvosOutput
from models.train.batch import ClipBatch
from models.train.losses import (
    LossWeights,
    box_losses,
    class_loss,
    mask_losses,
    subsample_targets,
)
from models.train.matcher import MatchCosts, match_clip


@dataclass(frozen=True)
class FamilyObjective:
    """Loss weights of the shared terms, plus SOC's contrastive term (0 disables it)."""

    weights: LossWeights = field(default_factory=LossWeights)
    contrastive: float = 0.0


def loss_weights_for(model: str) -> FamilyObjective:
    """The official weights of ``model`` (``referformer``, ``mutr`` or ``soc``)."""
    if model == "soc":
        return FamilyObjective(replace(LossWeights(), bbox=2.0), contrastive=1.0)
    return FamilyObjective()


def pad_mask_from_sizes(frames: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
    """B x T x Hp x Wp bool, True outside each clip's (h, w)."""
    B, T, _, H, W = frames.shape
    rows = torch.arange(H, device=frames.device)[None, :, None]
    cols = torch.arange(W, device=frames.device)[None, None, :]
    h = image_sizes[:, 0].to(frames.device)[:, None, None]
    w = image_sizes[:, 1].to(frames.device)[:, None, None]
    mask = (rows >= h) | (cols >= w)
    return mask[:, None].expand(B, T, H, W)


def contrastive_loss(
    video_queries: torch.Tensor, text_feature: torch.Tensor, matched: torch.Tensor
) -> torch.Tensor:
    """SOC's ``vl_loss``: X x Q x C queries / C against X x C text, NLL of the matched query."""
    sim = (video_queries / video_queries.shape[-1]) @ text_feature[..., None]  # X x Q x 1
    log_prob = sim[..., 0].log_softmax(-1)
    return -log_prob.gather(1, matched[:, None]).mean()


def family_losses(
    out: RvosOutput,
    batch: ClipBatch,
    *,
    mask_stride: int = 4,
    objective: FamilyObjective | None = None,
    costs: MatchCosts | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted loss terms of every head layer and their sum under ``"loss"``."""
    costs = costs or MatchCosts()
    objective = objective or FamilyObjective()
    weights = objective.weights
    target_masks = subsample_targets(batch.masks, mask_stride)  # X x T x h x w
    h, w = out.pred_masks.shape[-2:]
    target_masks = target_masks[..., :h, :w]
    valid = batch.valid.to(out.pred_logits.device)
    num_boxes = max(float(valid.sum()), 1.0)
    X = out.pred_logits.shape[1]
    clips = torch.arange(X, device=valid.device)
    terms: dict[str, torch.Tensor] = {}
    total = out.pred_logits.new_zeros(())
    for d, layer in enumerate(out.layers):
        logits, boxes, masks = out.pred_logits[d], out.pred_boxes[d], out.pred_masks[d]
        matched = torch.tensor(
            [
                match_clip(
                    logits[x], boxes[x], masks[x], batch.boxes[x], target_masks[x], valid[x], costs
                )
                for x in range(X)
            ],
            device=logits.device,
        )
        layer_terms = {"cls": weights.cls * class_loss(logits, matched, valid, num_boxes)}
        l1, giou = box_losses(boxes[clips, :, matched], batch.boxes, num_boxes)
        focal, dice = mask_losses(masks[clips, :, matched], target_masks, num_boxes)
        layer_terms.update(
            bbox=weights.bbox * l1,
            giou=weights.giou * giou,
            mask=weights.mask * focal,
            dice=weights.dice * dice,
        )
        if objective.contrastive and out.video_queries is not None and out.text_feature is not None:
            layer_terms["contrastive"] = objective.contrastive * contrastive_loss(
                out.video_queries[d], out.text_feature, matched
            )
        for name, value in layer_terms.items():
            terms[f"{name}_{layer}"] = value
            total = total + value
    terms["loss"] = total
    return terms


def make_step(
    objective: FamilyObjective | None = None,
) -> Callable[[ReferFormer, ClipBatch], Mapping[str, torch.Tensor]]:
    """A :class:`models.train.loop.Trainer` step function for any model of the family."""

    def step(model: ReferFormer, batch: ClipBatch) -> Mapping[str, torch.Tensor]:
        out = model(
            batch.frames,
            batch.input_ids,
            batch.attention_mask,
            pad_mask=pad_mask_from_sizes(batch.frames, batch.image_sizes),
            image_sizes=batch.image_sizes,
            expression_counts=batch.expression_counts,
        )
        return family_losses(out, batch, mask_stride=model.mask_stride, objective=objective)

    return step
