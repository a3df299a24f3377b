"""SgMg's training objective (``models/sgmg.py`` training branch + ``models/criterion.py``).

For every decoder layer (auxiliary losses on all of them, each with its own matching):

1. the CPK patch logits of every query are pixel-shuffled to 1/2 resolution and the clip's
   query is matched on them (before any refinement) with :func:`models.train.matcher.match_clip`;
2. MSO refines the matched query's patch logits to full resolution;
3. losses: focal class (every frame and query; the matched query positive where the object is
   visible), L1 + GIoU boxes, focal + dice on the refined masks (targets at stride 1) and on the
   patch masks (``loss_mask_low`` / ``loss_dice_low``, targets ``[1::2, 1::2]``).

28 terms for 4 layers; weights and matching costs default to SgMg's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from models.sgmg.model import SgMg, SgMgDecoded, VideoFeatures
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
class SgMgObjective:
    """Loss weights, matching costs and whether every decoder layer is supervised."""

    weights: LossWeights = field(default_factory=LossWeights)
    costs: MatchCosts = field(default_factory=MatchCosts)
    aux_loss: bool = True


DEFAULT_OBJECTIVE = SgMgObjective()


def layer_losses(
    model: SgMg,
    decoded: SgMgDecoded,
    layer: int,
    features: tuple[torch.Tensor, torch.Tensor],
    batch: ClipBatch,
    num_boxes: float,
    objective: SgMgObjective,
) -> dict[str, torch.Tensor]:
    """The 7 weighted terms of one decoder layer; ``decoded`` holds X = batch expressions."""
    X, T = batch.masks.shape[:2]
    logits = decoded.logits[layer].view(X, T, -1)
    boxes = decoded.boxes[layer].view(X, T, -1, 4)
    patch = decoded.patch_logits[layer]
    patch = patch.view(X, T, *patch.shape[1:])  # X x T x Q x 16 x h8 x w8
    low = SgMg.patch_to_low_res(patch)  # X x T x Q x h2 x w2
    target_low = subsample_targets(batch.masks, 2)
    matched = torch.tensor(
        [
            match_clip(
                logits[x],
                boxes[x],
                low[x],
                batch.boxes[x],
                target_low[x],
                batch.valid[x],
                objective.costs,
            )
            for x in range(X)
        ],
        device=logits.device,
    )
    rows = torch.arange(X, device=logits.device)
    chosen_patch = patch[rows, :, matched]  # X x T x 16 x h8 x w8
    full = model.refine(chosen_patch.flatten(0, 1), *features).view(X, T, *batch.masks.shape[-2:])
    chosen_low = low[rows, :, matched]
    w = objective.weights
    l1, giou = box_losses(boxes[rows, :, matched], batch.boxes, num_boxes)
    focal, dice = mask_losses(full, batch.masks, num_boxes)
    focal_low, dice_low = mask_losses(chosen_low, target_low, num_boxes)
    return {
        "loss_ce": w.cls * class_loss(logits, matched, batch.valid, num_boxes),
        "loss_bbox": w.bbox * l1,
        "loss_giou": w.giou * giou,
        "loss_mask": w.mask * focal,
        "loss_dice": w.dice * dice,
        "loss_mask_low": w.mask * focal_low,
        "loss_dice_low": w.dice * dice_low,
    }


def refine_features(video: VideoFeatures, batch: ClipBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's 1/4 and 1/8 features repeated for every expression of each clip."""
    counts = torch.tensor(batch.expression_counts, device=batch.frames.device)
    T = batch.num_frames
    out = []
    for level in (0, 1):
        f = video.backbone[level].view(batch.num_clips, T, *video.backbone[level].shape[1:])
        out.append(f.repeat_interleave(counts, dim=0).flatten(0, 1))
    return out[0], out[1]


def sgmg_loss(
    model: SgMg, batch: ClipBatch, objective: SgMgObjective = DEFAULT_OBJECTIVE
) -> dict[str, torch.Tensor]:
    """Weighted loss terms of one batch (``loss`` = their sum).

    A clip may carry several expressions (``batch.expression_counts``): the clip is encoded
    once and each expression decoded as its own column, which for SgMg is the same as
    separate clips sharing frames. :class:`models.sgmg.multi.MultiObjectSgMg` decodes them
    through its shared fusion and encoder instead (its ``decode``).
    """
    video = model.encode_video(batch.frames, batch.image_sizes)
    text = model.encode_text(batch.input_ids, batch.attention_mask)
    counts = torch.tensor(batch.expression_counts, device=batch.frames.device)
    owners = torch.repeat_interleave(torch.arange(batch.num_clips, device=counts.device), counts)
    layers = list(range(model.num_decoder_layers))
    if not objective.aux_loss:
        layers = layers[-1:]
    decoded = model.decode(video, text, mask_layers=layers, owners=owners)
    return assemble(model, decoded, layers, refine_features(video, batch), batch, objective)


def assemble(
    model: SgMg,
    decoded: SgMgDecoded,
    layers: list[int],
    features: tuple[torch.Tensor, torch.Tensor],
    batch: ClipBatch,
    objective: SgMgObjective,
) -> dict[str, torch.Tensor]:
    """Sum the per-layer terms (the last layer unsuffixed, auxiliary ones ``_<layer>``)."""
    num_boxes = max(float(batch.valid.sum()), 1.0)
    terms: dict[str, torch.Tensor] = {}
    last = model.num_decoder_layers - 1
    for layer in layers:
        suffix = "" if layer == last else f"_{layer}"
        for name, value in layer_losses(
            model, decoded, layer, features, batch, num_boxes, objective
        ).items():
            terms[name + suffix] = value
    terms["loss"] = torch.stack(list(terms.values())).sum()
    return terms
