"""SAM 2 sessions propagate the objects of all their tracks as one batch
(:meth:`vos.sam2.tracker.Tracker.track_many`): the outputs must equal one object at a time
(the official per-object predictor's order, ``Sam2Session.batch_objects = False``), on random
weights, with tracks whose memories differ in size (different key frames and directions)."""

from __future__ import annotations

import pytest
import torch

from tests.vos.conftest import synthetic_video
from vos.protocol import ProtocolConfig, propagate_video
from vos.sam2.engine import Sam2Engine
from vos.sam2.memory import MemoryBank, group_by_layout
from vos.sam2.model import Sam2Model
from vos.sam2.spec import Sam2Options, get_sam2_variant

torch.set_num_threads(1)

LOGIT_TOLERANCE = 1e-4  # the parity cases' bound against the official code


def _engine(version: str) -> Sam2Engine:
    torch.manual_seed(0)
    name = "sam2.1_hiera_tiny" if version == "2.1" else "sam2_hiera_tiny"
    model = Sam2Model(get_sam2_variant(name, image_size=128)).eval()
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(2.0)
    return Sam2Engine(model, Sam2Options(num_frames=8))


def _run(engine: Sam2Engine, batch: bool) -> list[dict[str, torch.Tensor]]:
    """Three tracks started on different frames (one with two objects, one turned round):
    per step the logits of every track."""
    frames, labels = synthetic_video(frames=8)
    session = engine.new_session(num_frames=8)
    session.inner.batch_objects = batch
    encs = [session.encode(f) for f in frames]
    outputs = []
    session.add_reference(encs[0], labels[0], track="both", frame_step=0)
    for t in range(1, 8):
        if t == 2:
            session.add_reference(encs[2], labels[2] == 1, track="late", frame_step=0)
        if t == 4:
            session.add_reference(encs[4], labels[4] == 2, track="back", frame_step=0)
        step = session.step(
            encs[t], tracks=[k for k in ("both", "late") if k in session.inner.tracks]
        )
        outputs.append({k: v.logits for k, v in step.items()})
    session.add_reference(encs[4], labels[4] == 2, track="back", frame_step=0)
    for t in (5, 6):
        step = session.step(encs[t], tracks=["back"])
        outputs.append({k: v.logits for k, v in step.items()})
    session.add_reference(encs[2], labels[2] == 1, track="late", frame_step=0)
    for t in (1, 0):  # "late" turned round beside "back" going on
        step = session.step(encs[t], tracks=["late", "back"])
        outputs.append({k: v.logits for k, v in step.items()})
    return outputs


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_batched_tracks_equal_one_object_at_a_time(version: str) -> None:
    engine = _engine(version)
    with torch.inference_mode():
        batched = _run(engine, batch=True)
        alone = _run(engine, batch=False)
    assert len(batched) == len(alone)
    for step_b, step_a in zip(batched, alone, strict=True):
        assert step_b.keys() == step_a.keys()
        for track in step_b:
            diff = (step_b[track] - step_a[track]).abs().max().item()
            assert diff <= LOGIT_TOLERANCE, (track, diff)
            assert torch.equal(step_b[track] > 0, step_a[track] > 0), track


def test_propagate_video_equal_with_and_without_batching() -> None:
    engine = _engine("2.1")
    frames, labels = synthetic_video(frames=6)
    masks = {"a": labels == 1, "b": labels == 2, "c": labels == 1}
    keys = {"a": 1, "b": 3, "c": 4}
    one_at_a_time = ProtocolConfig(
        batch_expressions=False, dedupe=False, feature_cache_bytes=0, return_probs=True
    )
    with torch.inference_mode():
        ours = propagate_video(engine, frames, masks, keys, ProtocolConfig(return_probs=True))
        base = propagate_video(engine, frames, masks, keys, one_at_a_time)
    for exp in masks:
        assert torch.equal(ours[exp].masks, base[exp].masks), exp
        probs_diff = (ours[exp].probs.float() - base[exp].probs.float()).abs().max().item()
        assert probs_diff <= 1e-3, (exp, probs_diff)  # float16 storage


def test_memory_banks_group_by_size_and_pointer_count() -> None:
    def bank(m: int, ptr: int) -> MemoryBank:
        return MemoryBank(torch.zeros(1, m, 64), torch.zeros(1, m, 64), ptr)

    banks = [bank(10, 4), bank(12, 4), bank(10, 4), bank(10, 8)]
    assert group_by_layout(banks) == [[0, 2], [1], [3]]


def test_forward_many_equals_forward_per_bank() -> None:
    torch.manual_seed(1)
    attention = Sam2Model(get_sam2_variant("sam2.1_hiera_tiny", image_size=64)).memory_attention
    hw = 16  # a 4 x 4 grid
    current, pos = torch.randn(1, hw, 256), torch.randn(1, hw, 256)
    banks = [
        MemoryBank(torch.randn(1, n * hw + p, 64), torch.randn(1, n * hw + p, 64), p)
        for n, p in ((1, 4), (2, 8), (1, 4), (3, 0))
    ]
    with torch.inference_mode():
        together = attention.forward_many(current, pos, banks)
        for i, b in enumerate(banks):
            alone = attention(current, pos, b.tokens, b.pos, b.num_ptr_tokens)
            assert torch.allclose(together[i : i + 1], alone, atol=1e-5, rtol=0), i
    with pytest.raises(ValueError, match="at least one"):
        attention.forward_many(current, pos, [])
