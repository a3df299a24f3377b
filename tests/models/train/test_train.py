"""Shared training pieces: box ops, losses, clip matching, the loop (incl. exact resume)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.train.boxes import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    masks_to_boxes,
)
from models.train.loop import OptimConfig, Trainer, lr_factor, param_groups
from models.train.losses import class_loss, dice_loss, sigmoid_focal_loss, subsample_targets
from models.train.matcher import match_clip


def test_box_conversions_and_giou() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]])
    giou = generalized_box_iou(a, b)
    # overlap 1, union 7, hull 9: 1/7 - 2/9
    assert float(giou[0, 0]) == pytest.approx(1 / 7 - 2 / 9)
    assert float(giou[0, 1]) == pytest.approx(1.0)
    torch.testing.assert_close(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(b)), b)
    with pytest.raises(ValueError, match="xyxy"):
        generalized_box_iou(torch.tensor([[1.0, 1.0, 0.0, 0.0]]), a)


def test_masks_to_boxes() -> None:
    masks = torch.zeros(2, 10, 20, dtype=torch.bool)
    masks[0, 2:4, 5:15] = True
    boxes = masks_to_boxes(masks)
    torch.testing.assert_close(boxes[0], torch.tensor([0.5, 0.3, 0.5, 0.2]))
    assert boxes[1].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_focal_and_dice_formulas() -> None:
    x = torch.tensor([[0.0, 2.0]])
    t = torch.tensor([[1.0, 0.0]])
    p = torch.sigmoid(x)
    expected = (
        0.25 * -math.log(p[0, 0]) * (1 - p[0, 0]) ** 2
        + 0.75 * -math.log(1 - p[0, 1]) * p[0, 1] ** 2
    ) / 2
    assert float(sigmoid_focal_loss(x, t, 1.0)) == pytest.approx(float(expected), rel=1e-5)
    dice = 1 - (2 * p[0, 0] + 1) / (p.sum() + 1 + 1)
    assert float(dice_loss(x, t, 1.0)) == pytest.approx(float(dice), rel=1e-5)


def test_class_loss_marks_matched_query_on_visible_frames() -> None:
    logits = torch.full((1, 2, 3), -10.0)
    logits[0, 0, 1] = 10.0  # matched query confident where visible
    low = class_loss(logits, torch.tensor([1]), torch.tensor([[True, False]]), 1.0)
    wrong = class_loss(logits, torch.tensor([2]), torch.tensor([[True, False]]), 1.0)
    assert float(low) < 1e-3 < float(wrong)


def test_subsample_targets_rule() -> None:
    m = torch.arange(16.0).view(1, 4, 4)
    assert subsample_targets(m, 2).tolist() == [[[5.0, 7.0], [13.0, 15.0]]]


def test_matcher_picks_the_query_that_fits() -> None:
    T, Q, h, w = 3, 4, 8, 8
    target = torch.zeros(T, h, w)
    target[:, 2:6, 2:6] = 1
    masks = torch.full((T, Q, h, w), -5.0)
    masks[:, 2] = target * 10 - 5
    boxes = torch.rand(T, Q, 4) * 0.2 + 0.1
    tgt_boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5]]).expand(T, 4)
    boxes[:, 2] = tgt_boxes
    logits = torch.zeros(T, Q)
    valid = torch.ones(T, dtype=torch.bool)
    assert match_clip(logits, boxes, masks, tgt_boxes, target, valid) == 2


def test_param_groups_and_schedule() -> None:
    model = nn.ModuleDict({"backbone": nn.Linear(2, 2), "head": nn.Linear(2, 1)})
    config = OptimConfig(steps=10, lr=1e-3, lr_by_prefix={"backbone.": 1e-4}, lr_drops=(5,))
    groups = {g["lr"]: len(g["params"]) for g in param_groups(model, config)}
    assert groups == {1e-4: 2, 1e-3: 2}
    assert lr_factor(4, config) == 1.0 and lr_factor(5, config) == pytest.approx(0.1)


def _regression_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
    x, y = batch
    loss = ((model(x) - y) ** 2).mean()
    return {"loss": loss, "mse": loss}


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(16, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def test_loop_learns_and_resumes_exactly() -> None:
    config = OptimConfig(steps=40, lr=0.05, lr_by_prefix={}, weight_decay=0.0, grad_clip=1.0)
    torch.manual_seed(0)
    full = Trainer(nn.Linear(3, 1), _regression_step, config)
    history = full.fit(_batch, log_every=10)
    assert history[-1]["mse"] < 0.1 * history[0]["mse"]

    torch.manual_seed(0)
    saved = {}
    first = Trainer(
        nn.Linear(3, 1), _regression_step, OptimConfig(**{**config.__dict__, "steps": 25})
    )
    first.fit(_batch, on_checkpoint=lambda step, state: saved.update(state), log_every=5)
    resumed = Trainer(nn.Linear(3, 1), _regression_step, config)
    resumed.load_state_dict(saved)
    resumed.fit(_batch, log_every=5)
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_non_finite_loss_stops() -> None:
    def bad(model: nn.Module, batch: object):
        return {"loss": model(torch.ones(1, 1)).sum() * float("nan")}

    with pytest.raises(FloatingPointError, match="step 0"):
        Trainer(nn.Linear(1, 1), bad, OptimConfig(steps=3)).fit(lambda s: None)
