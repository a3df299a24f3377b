"""The per-video session against a straightforward re-statement of the official engine."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.vos.conftest import synthetic_video, tiny_network
from vos.preprocess import ResizeRule, normalize_frames, one_hot_labels, resize_labels
from vos.session import Propagator, TTAConfig

torch.set_num_threads(1)


def official_loop(net, frames, ref_labels, gap, engines_objects):
    """aot-benchmark's evaluator, one scale: per engine a memory; soft aggregation over
    engines; memories updated with the arg-max label. ``engines_objects[g]`` = objects of g."""
    k = net.max_objects
    size = ResizeRule().network_size(*frames.shape[-2:], 1.0, net.spec.align_corners)
    x = normalize_frames(frames, size)
    enc = net.encode_image(x[:1])
    labels = resize_labels(ref_labels, size)
    states = []
    for g, _ in enumerate(engines_objects):
        local = torch.where((labels > g * k) & (labels <= (g + 1) * k), labels - g * k, 0)
        out = net.propagate(
            enc.tokens, enc.size_2d, None, net.id_embedding(one_hot_labels(local[None], k + 1))
        )
        entries = list(zip(out.memory.key, out.memory.value, strict=True))
        states.append({"long": [[e] for e in entries], "short": entries, "last": 0})
    outputs = []
    for t in range(1, frames.shape[0]):
        enc = net.encode_image(x[t : t + 1])
        logits_all, pending = [], []
        for g, state in enumerate(states):
            mem = [
                ((torch.cat([e[0] for e in lt], 1), torch.cat([e[1] for e in lt], 1)), st)
                for lt, st in zip(state["long"], state["short"], strict=True)
            ]
            out = net.propagate(enc.tokens, enc.size_2d, mem)
            logits = net.decode(out, enc)
            logits[:, engines_objects[g] + 1 :] = -1e10
            logits_all.append(
                F.interpolate(
                    logits,
                    size=frames.shape[-2:],
                    mode="bilinear",
                    align_corners=net.spec.align_corners,
                )
            )
            pending.append(out.memory)
        if len(states) == 1:
            probs = logits_all[0].softmax(1)[0]
        else:
            p = [lg.softmax(1)[0] for lg in logits_all]
            bg = torch.stack([q[0] for q in p]).prod(0, keepdim=True)
            merged = torch.cat([bg] + [q[1:] for q in p]).clamp(1e-5, 1 - 1e-5)
            probs = torch.logit(merged).softmax(0)
        n = sum(engines_objects)
        probs = probs[: 1 + n]
        label = probs.argmax(0)
        outputs.append(probs)
        net_label = resize_labels(label, size)
        for g, state in enumerate(states):
            local = torch.where(
                (net_label > g * k) & (net_label <= (g + 1) * k), net_label - g * k, 0
            )
            fused = net.fuse_memory(
                pending[g], net.id_embedding(one_hot_labels(local[None], k + 1))
            )
            state["short"] = fused
            if t - state["last"] >= gap:
                for layer, e in enumerate(fused):
                    state["long"][layer].insert(0, e)
                state["last"] = t
    return torch.stack(outputs)


@pytest.mark.parametrize("gap", [1, 2, 9999])
def test_session_matches_official_loop(family: str, gap: int) -> None:
    net = tiny_network(family)
    frames, labels = synthetic_video(frames=5)
    propagator = Propagator(net, long_term_gap=gap)
    session = propagator.new_session()
    with torch.no_grad():
        expected = official_loop(net, frames, labels[0], gap, [2])
    session.add_reference(frames[0], labels[0])
    got = torch.stack([session.step(f)["main"].probs for f in frames[1:]])
    assert got.shape == expected.shape == (4, 3, 49, 65)
    assert torch.allclose(got, expected, atol=1e-5)
    assert session.long_term_frames("main") == 1 + (4 // gap if gap < 9999 else 0)


def test_objects_beyond_one_engine_use_several_engines(family: str) -> None:
    net = tiny_network(family)  # max_objects = 3
    frames, labels = synthetic_video(frames=4)
    ref = labels[0].clone()
    # Five objects: split the two squares into quarters / halves.
    ref[(ref == 1) & (torch.arange(65)[None, :] >= 15)] = 3
    ref[(ref == 2) & (torch.arange(49)[:, None] >= 34)] = 4
    ref[:4, :4] = 5
    session = Propagator(net, long_term_gap=2).new_session()
    session.add_reference(frames[0], ref)
    assert session.objects("main") == (1, 2, 3, 4, 5)
    with torch.no_grad():
        expected = official_loop(net, frames, ref, 2, [3, 2])
    got = torch.stack([session.step(f)["main"].probs for f in frames[1:]])
    assert got.shape == (3, 6, 49, 65)
    assert torch.allclose(got, expected, atol=1e-5)
    assert session.stats["encoder_calls"] == 4  # engines share each frame's encoding


def test_tracks_in_one_session_equal_separate_sessions(family: str) -> None:
    net = tiny_network(family)
    frames, labels = synthetic_video(frames=5)
    propagator = Propagator(net, long_term_gap=2)
    joint = propagator.new_session()
    first = joint.encode(frames[0])  # one encoding shared by both references
    joint.add_reference(first, labels[0] == 1, track="a")
    joint.add_reference(first, labels[0], track="b")
    alone = {name: propagator.new_session() for name in "ab"}
    alone["a"].add_reference(frames[0], labels[0] == 1, track="a")
    alone["b"].add_reference(frames[0], labels[0], track="b")
    for frame in frames[1:]:
        both = joint.step(frame)
        for name in "ab":
            single = alone[name].step(frame)[name]
            assert torch.allclose(both[name].probs, single.probs, atol=1e-5)
    assert joint.stats["encoder_calls"] == 5
    assert sum(s.stats["encoder_calls"] for s in alone.values()) == 10


def test_tta_with_own_memories_is_the_mean_of_single_augmentations(family: str) -> None:
    net = tiny_network(family)
    frames, labels = synthetic_video(frames=4, height=56, width=72)
    tta = TTAConfig(scales=(1.0, 0.75), flip=True, memory_update="own")
    session = Propagator(net, long_term_gap=2, tta=tta).new_session()
    session.add_reference(frames[0], labels[0])
    singles = []
    for scale in (1.0, 0.75):
        for flip in (False, True):
            s = Propagator(net, long_term_gap=2, tta=TTAConfig(scales=(scale,))).new_session()
            video = frames.flip(-1) if flip else frames
            s.add_reference(video[0], labels[0].flip(-1) if flip else labels[0])
            singles.append((s, video, flip))
    for t in range(1, frames.shape[0]):
        got = session.step(frames[t])["main"].probs
        parts = []
        for s, video, flip in singles:
            p = s.step(video[t])["main"].probs
            parts.append(p.flip(-1) if flip else p)
        assert torch.allclose(got, torch.stack(parts).mean(0), atol=1e-4)
    assert session.stats["encoder_calls"] == 2 * frames.shape[0]  # one call per scale


def test_ensemble_memory_update_with_duplicate_augmentations_changes_nothing() -> None:
    net = tiny_network("deaot")
    frames, labels = synthetic_video(frames=4)
    single = Propagator(net, long_term_gap=2).new_session()
    double = Propagator(net, long_term_gap=2, tta=TTAConfig(scales=(1.0, 1.0))).new_session()
    for s in (single, double):
        s.add_reference(frames[0], labels[0])
    for frame in frames[1:]:
        a, b = single.step(frame)["main"], double.step(frame)["main"]
        assert torch.allclose(a.probs, b.probs, atol=1e-6)


def test_memory_cap_bounds_memory_and_keeps_the_reference() -> None:
    net = tiny_network("aot")
    frames, labels = synthetic_video(frames=9)
    session = Propagator(net, long_term_gap=1, long_term_cap=2).new_session()
    session.add_reference(frames[0], labels[0])
    sizes = []
    for frame in frames[1:]:
        session.step(frame)
        sizes.append(session.memory_bytes())
        assert session.long_term_frames("main") <= 3
    assert sizes[2:] == [sizes[2]] * len(sizes[2:])
    slot = session._tracks["main"].slots[(0, 0)]
    assert slot.long_term.num_references == 1


def test_new_objects_mid_video_and_manual_memory_update() -> None:
    net = tiny_network("aot")
    frames, labels = synthetic_video(frames=5)
    session = Propagator(net, long_term_gap=2).new_session()
    session.add_reference(frames[0], labels[0] == 1)  # object 1 only
    first = session.step(frames[1], update=False)["main"]
    assert first.probs.shape[0] == 2
    with pytest.raises(RuntimeError, match="update_memory"):
        session.step(frames[2])
    session.update_memory({"main": labels[1].clamp(max=1)})  # ground truth instead of arg-max
    result = session.step(frames[2])["main"]
    merged = torch.where(labels[2] == 2, 7, result.labels)  # object 7 appears at frame 2
    session.add_reference(frames[2], merged, frame_step=2)
    assert session.objects("main") == (1, 7)
    assert session.step(frames[3])["main"].probs.shape[0] == 3
    assert session.long_term_frames("main") == 2 + 1  # two references + frame 2


def test_unmasked_identities_are_part_of_the_arg_max() -> None:
    net = tiny_network("aot")
    frames, labels = synthetic_video(frames=3)
    session = Propagator(net, mask_unused_ids=False).new_session()
    session.add_reference(frames[0], labels[0] == 1)
    result = session.step(frames[1])["main"]
    assert result.probs.shape[0] == 1 + net.max_objects
    assert torch.allclose(result.probs.sum(0), torch.ones(49, 65), atol=1e-5)
    assert result.foreground.dtype == torch.bool


def test_bad_inputs_name_the_problem() -> None:
    net = tiny_network("aot")
    frames, labels = synthetic_video(frames=2)
    session = Propagator(net).new_session()
    with pytest.raises(KeyError, match="no reference"):
        session.step(frames[0], tracks=["x"])
    with pytest.raises(ValueError, match="holds no object"):
        session.add_reference(frames[0], torch.zeros(49, 65, dtype=torch.bool), track="empty")
    with pytest.raises(ValueError, match="mask of track 'm'"):
        session.add_reference(frames[0], labels[0][:10], track="m")
    with pytest.raises(ValueError, match="3 x H x W"):
        session.encode(frames[:1])


@pytest.mark.gpu
def test_autocast_on_cuda_stays_close_to_float32() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    net = tiny_network("deaot").cuda()
    frames, labels = synthetic_video(frames=4)
    outputs = []
    for autocast in (False, True):
        session = Propagator(net, long_term_gap=2, autocast=autocast).new_session()
        session.add_reference(frames[0], labels[0])
        outputs.append(torch.stack([session.step(f)["main"].probs for f in frames[1:]]))
    assert outputs[1].dtype == torch.float32
    assert (outputs[0] - outputs[1]).abs().max() < 2e-2
