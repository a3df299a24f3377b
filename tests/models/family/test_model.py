"""The family trunk on tiny random networks: shapes, expression batching, head-layer rules."""

from __future__ import annotations

import pytest
import torch

from tests.models.family_helpers import build_family, tiny_family_config

MODELS = ("referformer", "mutr", "soc")


def _net(model: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_family(tiny_family_config(model)).eval()


def _inputs(T: int = 3):
    torch.manual_seed(1)
    frames = torch.randn(1, T, 3, 40, 56)
    ids = torch.tensor([[0, 5, 6, 7, 2, 1, 1], [0, 9, 10, 11, 12, 13, 2]])
    mask = (ids != 1).long()
    return frames, ids, mask


@pytest.mark.parametrize("model", MODELS)
def test_eval_shapes_and_one_head_layer(model: str) -> None:
    net = _net(model)
    frames, ids, mask = _inputs()
    with torch.no_grad():
        out = net(frames, ids, mask)
    Q = net.num_queries
    assert out.layers == ([1] if model == "referformer" else [0])
    assert out.pred_logits.shape == (1, 2, 3, Q)
    assert out.pred_boxes.shape == (1, 2, 3, Q, 4)
    assert out.pred_masks.shape == (1, 2, 3, Q, 10, 14)  # stride 4
    assert torch.isfinite(out.pred_masks).all()


@pytest.mark.parametrize("model", MODELS)
def test_training_mode_heads_every_layer_and_backprops(model: str) -> None:
    net = _net(model).train()
    frames, ids, mask = _inputs(T=2)
    frames = frames.repeat(2, 1, 1, 1, 1)  # two clips, one expression each
    out = net(frames, ids, mask)
    assert out.layers == [0, 1]
    assert out.pred_masks.shape[:3] == (2, 2, 2)
    loss = out.pred_masks.sigmoid().mean() + out.pred_logits.mean() + out.pred_boxes.mean()
    if out.text_feature is not None:
        loss = loss + out.text_feature.mean()
    loss.backward()
    grads = [p.grad for p in net.controller.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert (out.video_queries is not None) == (model != "referformer")
    assert (out.text_feature is not None) == (model == "soc")


@pytest.mark.parametrize("model", MODELS)
def test_expressions_share_the_clip_and_equal_each_alone(model: str) -> None:
    net = _net(model)
    frames, ids, mask = _inputs()
    with torch.no_grad():
        video = net.encode_video(frames)
        both = net.decode(video, net.encode_text(ids, mask))
        for e in range(2):
            length = int(mask[e].sum())
            alone = net.decode(
                video, net.encode_text(ids[e : e + 1, :length], mask[e : e + 1, :length])
            )
            torch.testing.assert_close(
                both.pred_logits[:, e], alone.pred_logits[:, 0], atol=2e-5, rtol=1e-4
            )
            torch.testing.assert_close(
                both.pred_masks[:, e], alone.pred_masks[:, 0], atol=2e-4, rtol=1e-4
            )


def test_box_heads_follow_each_models_layer_rule() -> None:
    frames, ids, mask = _inputs()
    with torch.no_grad():
        for model in MODELS:
            net = _net(model)
            for head in net.bbox_embed:  # zero-initialised deltas would hide the rule
                torch.nn.init.normal_(head.layers[-1].weight, std=0.2)
            out = net.decode(net.encode_video(frames), net.encode_text(ids, mask), taps=True)
            refs = out.taps["references"].view(2, 2, 3, net.num_queries, 4)  # D x E x T x Q x 4
            boxes = out.pred_boxes[0]
            if model == "referformer":  # last layer's head == its refined reference
                torch.testing.assert_close(boxes, refs[-1], atol=1e-6, rtol=1e-5)
            elif model == "mutr":  # eval quirk: layer-0 box head on the first layer's states
                torch.testing.assert_close(boxes, refs[0], atol=1e-6, rtol=1e-5)
                logits = out.pred_logits[0]
                torch.testing.assert_close(logits, logits[:, :1].expand_as(logits))
            else:  # SOC: layer-0 head, but on the states plus the video queries
                assert not torch.allclose(boxes, refs[0], atol=1e-4)


def test_two_d_swin_backbone_variant() -> None:
    torch.manual_seed(0)
    net = build_family(tiny_family_config("mutr", backbone="swin", window_size=(1, 7, 7))).eval()
    frames, ids, mask = _inputs(T=2)
    with torch.no_grad():
        out = net(frames, ids, mask)
    assert out.pred_masks.shape == (1, 2, 2, net.num_queries, 10, 14)
    assert "norm3.weight" in net.backbone.state_dict()
