"""The family objective: terms per head layer, SOC's contrastive term, and it learns."""

from __future__ import annotations

import pytest
import torch

from models.family.train import (
    contrastive_loss,
    loss_weights_for,
    make_step,
    pad_mask_from_sizes,
)
from models.train.batch import ClipBatch
from models.train.boxes import masks_to_boxes
from models.train.loop import OptimConfig, Trainer
from tests.models.family_helpers import build_family, tiny_family_config


def _batch() -> ClipBatch:
    torch.manual_seed(0)
    T, H, W = 2, 64, 64
    masks = torch.zeros(2, T, H, W)
    masks[0, :, 8:28, 10:34] = 1
    masks[1, 0, 30:60, 30:50] = 1  # invisible in frame 1
    frames = torch.randn(2, T, 3, H, W) * 0.1
    frames[:, :, 0] += masks * 2  # the object is visible in the red channel
    boxes = torch.stack(
        [torch.stack([masks_to_boxes(m[None].bool())[0] for m in x]) for x in masks]
    )
    ids = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]])
    return ClipBatch(
        frames=frames,
        image_sizes=torch.tensor([[64, 64], [64, 64]]),
        input_ids=ids,
        attention_mask=(ids != 1).long(),
        masks=masks,
        boxes=boxes,
        valid=masks.flatten(2).any(2),
        expression_counts=[1, 1],
    )


def test_pad_mask_from_sizes() -> None:
    mask = pad_mask_from_sizes(torch.zeros(2, 1, 3, 4, 5), torch.tensor([[4, 5], [2, 3]]))
    assert not mask[0].any() and mask[1, 0, 2:].all() and mask[1, 0, :, 3:].all()
    assert not mask[1, 0, :2, :3].any()


def test_contrastive_loss_prefers_the_matched_query() -> None:
    text = torch.tensor([[1.0, 0.0]])
    queries = torch.tensor([[[50.0, 0.0], [-50.0, 0.0]]])
    good = contrastive_loss(queries, text, torch.tensor([0]))
    bad = contrastive_loss(queries, text, torch.tensor([1]))
    assert float(good) < float(bad)


@pytest.mark.parametrize("model", ["referformer", "mutr", "soc"])
def test_terms_per_layer(model: str) -> None:
    torch.manual_seed(0)
    net = build_family(tiny_family_config(model)).train()
    terms = make_step(loss_weights_for(model))(net, _batch())
    names = {k.rsplit("_", 1)[0] for k in terms if k != "loss"}
    expected = {"cls", "bbox", "giou", "mask", "dice"} | (
        {"contrastive"} if model == "soc" else set()
    )
    assert names == expected and all(k.endswith(("_0", "_1")) for k in terms if k != "loss")
    torch.testing.assert_close(terms["loss"], sum(v for k, v in terms.items() if k != "loss"))


def _fit(model: str, steps: int) -> list[dict[str, float]]:
    torch.manual_seed(0)
    net = build_family(tiny_family_config(model))
    config = OptimConfig(steps=steps, lr=2e-3, lr_by_prefix={}, weight_decay=0.0, grad_clip=1.0)
    batch = _batch()
    return Trainer(net, make_step(loss_weights_for(model)), config).fit(
        lambda s: batch, log_every=4
    )


def test_the_loss_falls() -> None:
    history = _fit("soc", 12)
    assert history[-1]["loss"] < 0.85 * history[0]["loss"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["referformer", "mutr"])
def test_the_loss_falls_for_the_fpn_models(model: str) -> None:
    history = _fit(model, 25)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
