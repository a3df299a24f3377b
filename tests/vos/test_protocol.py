"""The bidirectional key-frame protocol, and all expressions at once == one at a time."""

from __future__ import annotations

import pytest
import torch

from tests.vos.conftest import synthetic_video, tiny_network
from vos.protocol import ProtocolConfig, propagate_video
from vos.session import Propagator

torch.set_num_threads(1)


def one_expression(propagator, frames, masks, key, mode):
    """The challenge evaluator for one expression, written directly on the session API."""
    num = frames.shape[0]
    out = torch.zeros(masks.shape, dtype=torch.bool)
    out[key] = masks[key]
    session = propagator.new_session()
    if key < num - 1:
        session.add_reference(frames[key], masks[key], frame_step=0)
        for t in range(key + 1, num):
            out[t] = session.step(frames[t])["main"].foreground
    if key > 0:
        if mode == "fresh":
            session = propagator.new_session()
        session.add_reference(frames[key], masks[key], frame_step=0)
        for t in range(key - 1, -1, -1):
            out[t] = session.step(frames[t])["main"].foreground
    return out


@pytest.fixture(scope="module")
def video():
    frames, labels = synthetic_video(frames=7)
    noisy = labels.clone()
    noisy[:, 20:24, 30:40] = 1  # a "fused" input with mistakes
    masks = {
        "0": noisy == 1,
        "1": noisy == 1,  # same mask, other key frame
        "2": noisy == 2,
        "3": noisy == 2,  # duplicate of "2" (same key frame): propagated once
        "4": labels == 1,
    }
    keys = {"0": 3, "1": 0, "2": 6, "3": 6, "4": 3}
    return frames, masks, keys


@pytest.mark.parametrize("mode", ["faithful", "fresh"])
def test_all_expressions_at_once_equal_one_at_a_time(family: str, mode: str, video) -> None:
    frames, masks, keys = video
    propagator = Propagator(tiny_network(family), long_term_gap=2)
    stats: dict[str, int] = {}
    packed = propagate_video(
        propagator, frames, masks, keys, ProtocolConfig(mode=mode, return_probs=True), stats
    )
    separate = propagate_video(
        propagator,
        frames,
        masks,
        keys,
        ProtocolConfig(mode=mode, batch_expressions=False, dedupe=False, return_probs=True),
    )
    for exp in masks:
        reference = one_expression(propagator, frames, masks[exp], keys[exp], mode)
        assert torch.equal(packed[exp].masks, reference), exp
        assert torch.equal(separate[exp].masks, reference), exp
        assert packed[exp].probs is not None and separate[exp].probs is not None
        assert torch.allclose(packed[exp].probs.float(), separate[exp].probs.float(), atol=2e-3)
        assert torch.equal(packed[exp].masks[keys[exp]], masks[exp][keys[exp]])
    # Each frame encoded once (the forward sweep's frames are cached for the backward one).
    assert stats["encoder_calls"] == frames.shape[0]
    # "3" duplicates "2": four propagation problems, not five.
    forward_steps = (7 - 1 - 3) * 2 + (7 - 1 - 0)
    backward_steps = 3 * 2 + 6
    assert stats["slot_steps"] == forward_steps + backward_steps


def test_faithful_and_fresh_differ_only_backward(video) -> None:
    frames, masks, keys = video
    propagator = Propagator(tiny_network("aot"), long_term_gap=1)
    only = {"0": masks["0"]}
    faithful = propagate_video(propagator, frames, only, keys, ProtocolConfig(mode="faithful"))
    fresh = propagate_video(propagator, frames, only, keys, ProtocolConfig(mode="fresh"))
    assert torch.equal(faithful["0"].masks[3:], fresh["0"].masks[3:])
    # In faithful mode the backward pass re-adds the key frame on the forward engine.
    session = propagator.new_session()
    session.add_reference(frames[3], masks["0"][3], frame_step=0)
    for t in range(4, 7):
        session.step(frames[t])
    session.add_reference(frames[3], masks["0"][3], frame_step=0)
    assert session._tracks["main"].slots[(0, 0)].long_term.num_references == 2
    assert session.long_term_frames("main") == 2 + 3


def test_empty_key_frame_copies_the_input_and_chunks_agree(video) -> None:
    frames, masks, keys = video
    propagator = Propagator(tiny_network("deaot"), long_term_gap=2)
    empty = masks["0"].clone()
    empty[3] = False
    inputs = {**masks, "empty": empty}
    all_keys = {**keys, "empty": 3}
    whole = propagate_video(propagator, frames, inputs, all_keys, ProtocolConfig(return_probs=True))
    assert not whole["empty"].propagated
    assert torch.equal(whole["empty"].masks, empty)
    assert whole["empty"].probs is not None and whole["empty"].probs.dtype == torch.float16
    chunked = propagate_video(
        propagator,
        frames,
        inputs,
        all_keys,
        ProtocolConfig(max_expressions_per_batch=2, feature_cache_bytes=0),
    )
    for exp in inputs:
        assert torch.equal(whole[exp].masks, chunked[exp].masks), exp


def test_bad_protocol_inputs_are_named(video) -> None:
    frames, masks, _ = video
    propagator = Propagator(tiny_network("aot"))
    with pytest.raises(KeyError, match="'0' has no key frame"):
        propagate_video(propagator, frames, {"0": masks["0"]}, {})
    with pytest.raises(ValueError, match="key frame 9"):
        propagate_video(propagator, frames, {"0": masks["0"]}, {"0": 9})
    with pytest.raises(ValueError, match="do not match frames"):
        propagate_video(propagator, frames, {"0": masks["0"][:3]}, {"0": 1})
    with pytest.raises(ValueError, match="uint8"):
        propagate_video(propagator, frames.float(), {"0": masks["0"]}, {"0": 1})
