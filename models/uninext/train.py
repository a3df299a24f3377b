"""Training UNINEXT on referring frames: per-frame matching and the official loss terms.

UNINEXT trains image by image (the video stage adds frame pairs for its ReID head, which RVOS
does not use). For each (frame, expression) the referred object is one target, or none when it
is out of view. Following MasterBin-IIAU/UNINEXT@5ab0386 (``HungarianMatcherVL``,
``SetCriterion`` / ``DINOCriterion`` in ``models/deformable_detr/deformable_detr.py``):

* every decoder layer and the encoder proposals are matched separately: the query of least
  ``2 * focal class cost + 5 * L1 + 2 * (-GIoU)``;
* class: sigmoid focal loss over every query (the matched one positive, none on frames without
  the object), summed and divided by the number of targets; boxes: L1 + GIoU of the matched
  query; IoU branch: BCE of its logit against the matched box's IoU with the target
  (detached); masks: focal + dice of the matched query's stride-4 logits against the target
  sampled at the same stride (CondInst ``start::4``). The encoder proposals get class and box
  terms only.

Not ported: DINO's contrastive denoising queries (a training aid whose parameters, the
``resizer`` label encoder, are skipped by the converter). The tiny model trains without them.

Naming: N = frames in the batch, Q = query slots, S = encoder tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.common.rvos_inference import IMAGENET_MEAN, IMAGENET_STD
from models.train.batch import ClipBatch
from models.train.boxes import box_cxcywh_to_xyxy, box_iou, generalized_box_iou
from models.train.losses import LossWeights, box_losses, class_loss, mask_losses, subsample_targets
from models.uninext.model import Predictions, UninextModel


@dataclass(frozen=True)
class FrameBatch:
    """Referring frames, batched top-left and zero-padded.

    Attributes:
        images: N x 3 x H x W uint8 RGB at network size (or normalised floats).
        image_sizes: N x 2 int64 (h, w) content size of each row.
        input_ids / attention_mask: N x T the row's expression (0/1 mask).
        masks: N x H x W bool, the referred object (all False where it is out of view).
    """

    images: torch.Tensor
    image_sizes: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    masks: torch.Tensor
    normalized: bool = False  # images hold (x - pixel_mean) / pixel_std floats

    def to(self, device: torch.device | str) -> FrameBatch:
        tensors = [self.images, self.image_sizes, self.input_ids, self.attention_mask, self.masks]
        return FrameBatch(*(t.to(device) for t in tensors), normalized=self.normalized)

    @classmethod
    def from_clips(cls, batch: ClipBatch, model: UninextModel) -> FrameBatch:
        """Every frame of every (clip, expression) of a :class:`ClipBatch` as its own sample.

        The clip frames are ImageNet-normalised (``pipeline/training/rvos_clips.py``); they are
        re-expressed in the model's pixel statistics (the same numbers for UNINEXT).
        """
        B, T = batch.frames.shape[:2]
        clip_of = torch.repeat_interleave(
            torch.arange(B), torch.tensor(batch.expression_counts, dtype=torch.long)
        )  # X
        frames = batch.frames[clip_of].flatten(0, 1)  # (X*T) x 3 x Hp x Wp
        dev = frames.device
        mean_in = torch.tensor(IMAGENET_MEAN, device=dev).view(1, 3, 1, 1) * 255
        std_in = torch.tensor(IMAGENET_STD, device=dev).view(1, 3, 1, 1) * 255
        raw = frames * std_in + mean_in
        images = (raw - model.pixel_mean.to(dev)) / model.pixel_std.to(dev)
        return cls(
            images=images,
            image_sizes=batch.image_sizes[clip_of].repeat_interleave(T, dim=0),
            input_ids=batch.input_ids.repeat_interleave(T, dim=0),
            attention_mask=batch.attention_mask.repeat_interleave(T, dim=0),
            masks=batch.masks.flatten(0, 1) > 0.5,
            normalized=True,
        )


@dataclass(frozen=True)
class UninextLossWeights(LossWeights):
    """Class / L1 / GIoU / mask focal / dice weights (official 2 / 5 / 2 / 2 / 5) and IoU BCE."""

    iou: float = 1.0


def target_boxes(masks: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
    """N x H x W bool masks -> N x 4 cxcywh boxes normalised by each row's content size."""
    boxes = torch.zeros(masks.shape[0], 4, device=masks.device)
    for row, (h, w) in enumerate(image_sizes.tolist()):
        ys, xs = torch.nonzero(masks[row, :h, :w], as_tuple=True)
        if ys.numel() == 0:
            continue
        x0, x1 = xs.min().float(), xs.max().float() + 1
        y0, y1 = ys.min().float(), ys.max().float() + 1
        boxes[row] = torch.stack(
            [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]
        )
    return boxes


@torch.no_grad()
def match_queries(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    targets: torch.Tensor,
    weights: LossWeights = UninextLossWeights(),
) -> torch.Tensor:
    """Each row's best query for its single target.

    Args:
        logits: N x Q class logits; boxes: N x Q x 4 cxcywh; targets: N x 4 cxcywh.

    Returns:
        N int64 query indices (meaningless on rows without a target).
    """
    prob = logits.sigmoid()
    pos = 0.25 * (1 - prob) ** 2 * -(prob + 1e-8).log()
    neg = 0.75 * prob**2 * -(1 - prob + 1e-8).log()
    l1 = (boxes - targets[:, None]).abs().sum(-1)
    giou = torch.stack(
        [
            generalized_box_iou(box_cxcywh_to_xyxy(b), box_cxcywh_to_xyxy(t[None]))[:, 0]
            for b, t in zip(boxes, targets, strict=True)
        ]
    )
    cost = weights.cls * (pos - neg) + weights.bbox * l1 - weights.giou * giou
    return cost.argmin(dim=1)


def _detection_terms(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    targets: torch.Tensor,
    present: torch.Tensor,
    num_boxes: float,
    weights: UninextLossWeights,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Class and box terms of one set of predictions; also returns the matched queries."""
    matched = match_queries(logits, boxes, targets, weights)
    terms = {"cls": weights.cls * class_loss(logits[:, None], matched, present[:, None], num_boxes)}
    if present.any():
        rows = present.nonzero()[:, 0]
        picked = boxes[rows, matched[rows]]
        l1, giou = box_losses(picked, targets[rows], num_boxes)
        terms["bbox"] = weights.bbox * l1
        terms["giou"] = weights.giou * giou
    return terms, matched


def uninext_losses(
    model: UninextModel,
    batch: FrameBatch,
    weights: UninextLossWeights = UninextLossWeights(),
) -> dict[str, torch.Tensor]:
    """Weighted loss terms of one batch and their sum under ``"loss"``."""
    text = model.encode_text(batch.input_ids, batch.attention_mask)
    visual = model.encode_images(batch.images, batch.image_sizes, normalized=batch.normalized)
    preds = model.decode(visual, text, all_layers=True)
    targets = target_boxes(batch.masks, batch.image_sizes)
    present = batch.masks.flatten(1).any(1)
    num_boxes = max(float(present.sum()), 1.0)
    terms: dict[str, torch.Tensor] = {}

    for layer, heads in enumerate(preds.layers):
        layer_terms, matched = _detection_terms(
            heads.logits, heads.boxes, targets, present, num_boxes, weights
        )
        if present.any():
            layer_terms.update(
                _mask_and_iou_terms(
                    model, preds, layer, matched, batch, targets, present, num_boxes, weights
                )
            )
        suffix = "" if layer == len(preds.layers) - 1 else f"_{layer}"
        terms.update({k + suffix: v for k, v in layer_terms.items()})

    enc_boxes = preds.decoder.proposal_boxes.sigmoid()
    enc_terms, _ = _detection_terms(
        preds.decoder.proposal_logits, enc_boxes, targets, present, num_boxes, weights
    )
    terms.update({k + "_enc": v for k, v in enc_terms.items()})
    terms["loss"] = torch.stack(list(terms.values())).sum()
    return terms


def _mask_and_iou_terms(
    model: UninextModel,
    preds: Predictions,
    layer: int,
    matched: torch.Tensor,
    batch: FrameBatch,
    targets: torch.Tensor,
    present: torch.Tensor,
    num_boxes: float,
    weights: UninextLossWeights,
) -> dict[str, torch.Tensor]:
    heads = preds.layers[layer]
    rows = present.nonzero()[:, 0]
    picked = heads.boxes[rows, matched[rows]]
    with torch.no_grad():
        iou = torch.diag(box_iou(box_cxcywh_to_xyxy(picked), box_cxcywh_to_xyxy(targets[rows]))[0])
    iou_loss = F.binary_cross_entropy_with_logits(heads.ious[rows, matched[rows]], iou)
    logits = model.mask_logits(preds, matched[:, None], layer=layer)[rows]  # n x 1 x h4 x w4
    target = subsample_targets(batch.masks[rows].float(), 4)[:, None]
    h, w = logits.shape[-2:]
    target = F.pad(target, (0, max(0, w - target.shape[-1]), 0, max(0, h - target.shape[-2])))
    focal, dice = mask_losses(logits, target[..., :h, :w], num_boxes)
    return {
        "iou": weights.iou * iou_loss,
        "mask": weights.mask * focal,
        "dice": weights.dice * dice,
    }


def uninext_clip_loss(model: UninextModel, batch: ClipBatch) -> dict[str, torch.Tensor]:
    """:func:`uninext_losses` on a clip batch (``lsvos train-rvos``), frames as samples."""
    return uninext_losses(model, FrameBatch.from_clips(batch, model))
