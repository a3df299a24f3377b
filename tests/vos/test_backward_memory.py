"""The backward pass's memory rule (``backward_memory``): the winners' AOT copy against
aot-benchmark 75e46fe (third_party/aot.md, "The backward pass").

A key frame in the middle of 13 frames, long-term gap 5: the forward pass propagates frames
7 .. 12 (steps 1 .. 6), the key frame is added again on the same engine, and the backward pass
propagates frames 5 .. 0 (steps 7 .. 12).

- ``key_frame_step`` (winners): the re-added key frame records step 0, so frame 5 (step 7) is
  written to long-term memory at once, then frame 0 (step 12).
- ``running_step`` (upstream): it records step 6, so the first backward write is frame 1
  (step 11).

Everything up to and including frame 5's prediction reads the same memories; frame 4 is the
first frame whose memory holds an entry (frame 5) that the upstream schedule has not added.
"""

from __future__ import annotations

import pytest
import torch

from pipeline.adapters.engines import propagator_options
from pipeline.core.errors import UserError
from pipeline.orchestration.config import BackwardMemory, EngineConfig
from tests.vos.conftest import synthetic_video, tiny_network, tiny_spec
from vos.build import (
    BACKWARD_MEMORIES,
    EngineBuildError,
    EngineWeights,
    PropagatorOptions,
    build_engine,
)
from vos.protocol import ProtocolConfig, propagate_video
from vos.session import Propagator
from vos.variants import spec_to_dict

torch.set_num_threads(1)

FRAMES, KEY, GAP = 13, 6, 5
RULES = ("key_frame_step", "running_step")
# (frame, step) of every propagated frame written to long-term memory, per rule
WRITES = {
    "key_frame_step": [(11, 5), (5, 7), (0, 12)],
    "running_step": [(11, 5), (1, 11)],
}
FIRST_DIFFERENT = KEY - 2  # the first frame predicted after frame KEY - 1's write (winners only)


@pytest.fixture(scope="module")
def video() -> tuple[torch.Tensor, torch.Tensor]:
    frames, labels = synthetic_video(frames=FRAMES)
    return frames, labels == 1


def run_sweeps(
    propagator: Propagator, frames: torch.Tensor, masks: torch.Tensor
) -> tuple[dict[int, torch.Tensor], list[tuple[int, int]]]:
    """The protocol's two sweeps on one session (key frame added with ``frame_step=0`` before
    each): per frame the float32 probabilities, and (frame, step) of each long-term write."""
    session = propagator.new_session()
    slot = None
    probs: dict[int, torch.Tensor] = {}
    writes: list[tuple[int, int]] = []
    order = [list(range(KEY + 1, FRAMES)), list(range(KEY - 1, -1, -1))]
    for sweep in order:
        session.add_reference(frames[KEY], masks[KEY], frame_step=0)
        slot = session._tracks["main"].slots[(0, 0)]
        for t in sweep:
            before = session.long_term_frames("main")
            probs[t] = session.step(frames[t])["main"].probs
            if session.long_term_frames("main") > before:
                writes.append((t, slot.frame_step))
    assert slot is not None and slot.long_term.num_references == 2
    return probs, writes


@pytest.mark.parametrize("rule", RULES)
def test_long_term_writes_follow_each_rule(family: str, rule: str, video) -> None:
    frames, masks = video
    propagator = Propagator(tiny_network(family), long_term_gap=GAP, backward_memory=rule)
    _, writes = run_sweeps(propagator, frames, masks)
    assert writes == WRITES[rule]


def test_rules_agree_up_to_the_first_divergent_memory_and_differ_from_there(
    family: str, video
) -> None:
    frames, masks = video
    net = tiny_network(family)
    runs = {
        rule: run_sweeps(Propagator(net, long_term_gap=GAP, backward_memory=rule), frames, masks)
        for rule in RULES
    }
    winners, upstream = (runs[rule][0] for rule in RULES)
    for t in range(FIRST_DIFFERENT + 1, FRAMES):
        if t != KEY:
            assert torch.equal(winners[t], upstream[t]), f"frame {t}"
    for t in range(FIRST_DIFFERENT, -1, -1):
        assert not torch.equal(winners[t], upstream[t]), f"frame {t}"

    # The protocol itself (propagate_video) shows the same split in its outputs.
    inputs = {"0": masks}
    keys = {"0": KEY}
    outputs = {
        rule: propagate_video(
            Propagator(net, long_term_gap=GAP, backward_memory=rule),
            frames,
            inputs,
            keys,
            ProtocolConfig(return_probs=True),
        )["0"].probs
        for rule in RULES
    }
    first, second = (outputs[rule] for rule in RULES)
    assert first is not None and second is not None
    assert torch.equal(first[FIRST_DIFFERENT + 1 :], second[FIRST_DIFFERENT + 1 :])
    for t in range(FIRST_DIFFERENT, -1, -1):
        assert not torch.equal(first[t], second[t]), f"frame {t}"


def test_fresh_backward_engines_make_the_rules_equal(video) -> None:
    """A new engine for the backward pass starts at step 0, where both rules agree."""
    frames, masks = video
    net = tiny_network("deaot")
    config = ProtocolConfig(mode="fresh", return_probs=True)
    results = [
        propagate_video(
            Propagator(net, long_term_gap=GAP, backward_memory=rule),
            frames,
            {"0": masks},
            {"0": KEY},
            config,
        )["0"]
        for rule in RULES
    ]
    assert torch.equal(results[0].masks, results[1].masks)
    assert results[0].probs is not None and results[1].probs is not None
    assert torch.equal(results[0].probs, results[1].probs)


def test_the_option_is_typed_defaulted_and_mapped() -> None:
    assert PropagatorOptions().backward_memory == "key_frame_step"
    assert Propagator(tiny_network("aot")).backward_memory == "key_frame_step"
    assert tuple(str(m) for m in BackwardMemory) == BACKWARD_MEMORIES == RULES
    weights = EngineWeights.project(
        tiny_network("deaot").state_dict(), spec_to_dict(tiny_spec("deaot")), "weights.bin"
    )
    engine = build_engine("deaot", weights, PropagatorOptions(backward_memory="running_step"))
    assert isinstance(engine, Propagator) and engine.backward_memory == "running_step"
    settings = EngineConfig(
        family="deaot",  # type: ignore[arg-type]
        variant="tiny",
        checkpoint="weights.bin",
        backward_memory=BackwardMemory.running_step,  # type: ignore[attr-defined]
    )
    assert propagator_options(settings).backward_memory == "running_step"
    assert EngineConfig().backward_memory == BackwardMemory.key_frame_step  # type: ignore[attr-defined]


def test_upstream_rule_masks_unused_identities_and_bad_values_are_named() -> None:
    with pytest.raises(EngineBuildError, match="mask_unused_ids"):
        PropagatorOptions(backward_memory="running_step", mask_unused_ids=False)
    with pytest.raises(EngineBuildError, match="backward memory must be one of"):
        PropagatorOptions(backward_memory="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask_unused_ids"):
        Propagator(tiny_network("aot"), backward_memory="running_step", mask_unused_ids=False)
    settings = EngineConfig(
        family="aot",  # type: ignore[arg-type]
        variant="tiny",
        checkpoint="weights.bin",
        mask_unused_ids=False,
        backward_memory=BackwardMemory.running_step,  # type: ignore[attr-defined]
    )
    with pytest.raises(UserError, match="mask_unused_ids"):
        propagator_options(settings)
