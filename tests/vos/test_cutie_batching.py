"""Cutie sessions step their tracks as one batch (:func:`vos.cutie.inference.step_tracks`,
:mod:`vos.cutie.batch`): the outputs must equal the tracks stepped one at a time (one official
``InferenceCore`` per expression, ``CutieSession.batch_tracks = False``), on random weights,
with tracks of different object counts, key frames, memory-frame phases and buckets."""

from __future__ import annotations

import pytest
import torch

from tests.vos.test_cutie import tiny_network, video
from vos.cutie.batch import group_indices, repeat_batch
from vos.cutie.engine import CutieEngine
from vos.cutie.inference import CutieProcessor, encode_frame, step_tracks
from vos.cutie.spec import CutieSettings, LongTermSettings

torch.set_num_threads(1)

PROB_TOLERANCE = 1e-5  # float32 rounding of the batched convolutions; the masks are equal

SETTINGS = {
    "fifo": CutieSettings(mem_every=2, max_mem_frames=3),
    "flip": CutieSettings(mem_every=3, max_mem_frames=3, flip_aug=True, stagger_updates=2),
    "long_term": CutieSettings(
        mem_every=1,
        use_long_term=True,
        long_term=LongTermSettings(
            max_mem_frames=3,
            min_mem_frames=2,
            num_prototypes=8,
            max_num_tokens=40,
            buffer_tokens=8,
        ),
    ),
}


def _run(settings: CutieSettings, batch: bool) -> list[dict[str, torch.Tensor]]:
    """Four tracks: "pair" (objects 1 and 2 from frame 0), "one" and "two" (one object each,
    from frame 1 and 2: the same object count, so they share the decoder call), "grow" (object
    1, object 2 added on frame 3: a second bucket) -> per step the probabilities per track."""
    engine = CutieEngine(tiny_network(), settings)
    session = engine.new_session()
    session.batch_tracks = batch
    frames, labels = video(8)
    outputs = []
    with torch.inference_mode():
        for t in range(8):
            enc = session.encode(frames[t])
            if session.tracks:
                step = session.step(enc)
                outputs.append({k: v.probs for k, v in step.items()})
            if t == 0:
                session.add_reference(enc, labels[0], track="pair")
                session.add_reference(enc, labels[0] * (labels[0] == 1), track="grow")
            if t == 1:
                session.add_reference(enc, labels[1] == 1, track="one")
            if t == 2:
                session.add_reference(enc, (labels[2] == 2).long() * 2, track="two")
            if t == 3:
                session.add_reference(enc, labels[3] * (labels[3] == 2), track="grow")
    return outputs


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_batched_tracks_equal_one_track_at_a_time(name: str) -> None:
    batched, alone = _run(SETTINGS[name], True), _run(SETTINGS[name], False)
    assert len(batched) == len(alone) == 7
    for step_b, step_a in zip(batched, alone, strict=True):
        assert step_b.keys() == step_a.keys()
        for track in step_b:
            diff = (step_b[track] - step_a[track]).abs().max().item()
            assert diff <= PROB_TOLERANCE, (name, track, diff)
            assert torch.equal(step_b[track].argmax(0), step_a[track].argmax(0)), (name, track)
    grow = batched[-1]["grow"]
    assert grow.shape[0] == 3  # background and both objects of the two buckets


def test_step_tracks_refuses_two_networks_and_accepts_none() -> None:
    settings = CutieSettings()
    frames, labels = video(2)
    processors = []
    for seed in (0, 1):
        network = tiny_network(seed)
        processor = CutieProcessor(network, settings)
        processor.step(encode_frame(network, frames[0], settings), labels[0])
        processors.append(processor)
    enc = encode_frame(processors[0].network, frames[1], settings)
    assert step_tracks([], enc) == []
    with pytest.raises(ValueError, match="one network"):
        step_tracks(processors, enc)


def test_groups_and_track_major_repeats() -> None:
    assert group_indices([2, 1, 2, (1, True), 1]) == [[0, 2], [1, 4], [3]]
    x = torch.arange(4.0).view(2, 2)
    assert torch.equal(repeat_batch(x, 3), torch.cat([x, x, x]))
    assert repeat_batch(x, 1) is x
