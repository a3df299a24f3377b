"""The propagation shortcuts of issue 18 against the computations they replace, on random weights.

- full-size logits: only the background + object channels are upsampled and soft-maxed (the
  masked identities get exactly 0): bit-identical;
- the first propagation layer runs once per frame for all tracks (its input is the frame);
- a track's key frame added again (the backward pass) is copied from long-term memory:
  bit-identical;
- the arg-max is ``max(0).indices``: bit-identical;
- local attention: one GEMM per query row over its stacked window rows instead of one per
  window row and a sum: the same weights bit for bit, the output up to float rounding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.vos.conftest import synthetic_video, tiny_network
from vos.layers.attention import (
    _band_to_skew,
    _skew_to_band,
    _window_outside,
    attend,
    local_attention,
)
from vos.memory import LongTermMemory
from vos.protocol import ProtocolConfig, propagate_video
from vos.session import Propagator, first_argmax

torch.set_num_threads(1)


def test_first_argmax_is_argmax_with_ties_and_nan() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.randint(0, 3, (5, 17, 23), generator=g).float()  # many ties
    probs[:, 0, 0] = torch.tensor([0.0, float("nan"), 1.0, float("nan"), 2.0])
    assert torch.equal(first_argmax(probs), probs.argmax(0))
    assert torch.equal(first_argmax(probs[:2]), probs[:2].argmax(0))


def _full_channel_probs(logits_s4: torch.Tensor, size: tuple[int, int], align: bool):
    """What the session computed before: every identity channel upsampled and soft-maxed."""
    full = F.interpolate(logits_s4, size=size, mode="bilinear", align_corners=align)
    return torch.softmax(full, dim=1)


def test_upsampling_only_the_used_channels_equals_the_full_softmax(family: str) -> None:
    net = tiny_network(family)
    frames, labels = synthetic_video(frames=5)
    session = Propagator(net, long_term_gap=2).new_session()
    session.taps = {}
    session.add_reference(frames[0], labels[0])
    got = [session.step(frame)["main"].probs for frame in frames[1:]]
    size = tuple(frames.shape[-2:])
    for step, probs in enumerate(got):
        logits = session.taps["logits_s4"][step]  # 1 x (K+1) x h x w, unused ids masked
        expected = _full_channel_probs(logits, size, net.spec.align_corners)[0, :3]
        assert probs.shape == (3, *size)
        assert torch.equal(probs, expected)


def test_several_engines_still_upsample_every_channel(family: str) -> None:
    net = tiny_network(family)  # max_objects = 3
    frames, labels = synthetic_video(frames=3)
    ref = labels[0].clone()
    ref[(ref == 1) & (torch.arange(65)[None, :] >= 15)] = 3
    ref[:4, :4] = 4  # 4 objects: two engines, the second with 2 unused identities
    session = Propagator(net, long_term_gap=2).new_session()
    session.taps = {}
    session.add_reference(frames[0], ref)
    probs = session.step(frames[1])["main"].probs
    logits = session.taps["logits_s4"][0]
    per_engine = _full_channel_probs(logits, tuple(frames.shape[-2:]), net.spec.align_corners)
    background = per_engine[:, 0:1].prod(dim=0)
    merged = torch.cat([background, *[p[1:4] for p in per_engine]]).clamp(1e-5, 1 - 1e-5)
    expected = torch.softmax(torch.logit(merged), dim=0)[:5]
    assert torch.equal(probs, expected)


INPUT_SIZE = (65, 97)  # a 5 x 7 token grid for the tiny networks


def _memories(net, tokens, size_2d, batch: int):
    """Per-layer memories of ``batch`` tracks: reference frames with different identities."""
    one_hot = torch.zeros(batch, net.max_objects + 1, *INPUT_SIZE)
    one_hot[:, 0] = 1
    for b in range(batch):
        one_hot[b, 0, b * 16 : b * 16 + 30, :] = 0
        one_hot[b, 1 + b, b * 16 : b * 16 + 30, :] = 1
    ref = net.propagate(tokens, size_2d, None, net.id_embedding(one_hot))
    memory = [
        ([(k[i : i + 1], v[i : i + 1]) for i in range(batch)], (k, v))
        for k, v in zip(ref.memory.key, ref.memory.value, strict=True)
    ]
    return memory, one_hot


def _outputs(out) -> list[torch.Tensor]:
    ids = [v for v in out.memory.id_value if v is not None]
    return [*out.decoder_inputs, out.last, *out.memory.key, *out.memory.value, *ids]


@pytest.mark.parametrize("mode", ["step", "reference"])
def test_shared_first_layer_equals_one_copy_per_track(family: str, mode: str) -> None:
    """One frame for three tracks: the batch-1 frame (first layer computed once) against the
    frame copied per track (the previous code: every layer on three copies)."""
    net = tiny_network(family)
    torch.manual_seed(3)
    with torch.inference_mode():
        enc = net.encode_image(torch.randn(1, 3, *INPUT_SIZE))
        memories, one_hot = _memories(net, enc.tokens, enc.size_2d, batch=3)
        copies = enc.tokens.expand(3, -1, -1).contiguous()
        if mode == "step":
            shared = net.propagate(enc.tokens, enc.size_2d, memories)
            per_track = net.propagate(copies, enc.size_2d, memories)
        else:
            id_emb = net.id_embedding(one_hot)
            shared = net.propagate(enc.tokens, enc.size_2d, None, id_emb)
            per_track = net.propagate(copies, enc.size_2d, None, id_emb)
        logits_shared = net.decode(shared, enc)
        logits_copies = net.decode(per_track, enc)
    pairs = [*zip(_outputs(shared), _outputs(per_track), strict=True)]
    pairs.append((logits_shared, logits_copies))
    for new, old in pairs:
        assert new.shape == old.shape and new.shape[0] == 3
        torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)


def test_shared_query_attention_equals_expanded_query() -> None:
    torch.manual_seed(4)
    q = torch.randn(1, 2, 5, 7, 4)
    k, v = torch.randn(3, 2, 5, 7, 4), torch.randn(3, 2, 5, 7, 6)
    rel = torch.randn(1, 2, 5, 7, 25)
    out, attn = local_attention(q, k, v, 2, rel)
    ref_out, ref_attn = local_attention(
        q.expand(3, -1, -1, -1, -1).contiguous(), k, v, 2, rel.expand(3, -1, -1, -1, -1)
    )
    assert torch.equal(out, ref_out) and torch.equal(attn, ref_attn)
    # Shared query and key (a reference frame), one value per identity.
    out, attn = local_attention(q, k[:1], v, 2, rel)
    assert attn.shape[0] == 1 and out.shape[0] == 3
    for i in range(3):
        alone, _ = local_attention(q, k[:1], v[i : i + 1], 2, rel)
        assert torch.equal(out[i : i + 1], alone)

    tokens = torch.randn(1, 10, 8)
    keys, values = torch.randn(3, 12, 8), torch.randn(3, 12, 6)
    listed = [(keys[i : i + 1], values[i : i + 1]) for i in range(3)]
    expanded = tokens.expand(3, -1, -1)
    assert torch.equal(attend(tokens, listed, heads=2), attend(expanded, listed, heads=2))
    assert torch.equal(attend(tokens, (keys, values), 2), attend(expanded, (keys, values), 2))


def _local_attention_per_window_row(q, k, v, max_dis, rel):
    """The previous formulation: a GEMM per window row dy, the 2m+1 partial outputs summed."""
    n, h, w, _ = q.shape
    win = 2 * max_dis + 1
    pad = (0, 0, max_dis, max_dis, max_dis, max_dis)
    kp = F.pad(k, pad).transpose(2, 3)
    logits = q.new_empty(n, h, w, win, win)
    for dy in range(win):
        logits[:, :, :, dy] = _band_to_skew(torch.matmul(q, kp[:, dy : dy + h]), win)
    logits = logits.view(n, h, w, win * win) + rel
    outside = _window_outside(h, w, max_dis, q.device)
    attn = torch.softmax(logits.masked_fill(outside, -1e8), dim=-1)
    vp = F.pad(v, pad)
    rows = attn.view(n, h, w, win, win)
    out = sum(
        torch.matmul(_skew_to_band(rows[:, :, :, dy], w), vp[:, dy : dy + h]) for dy in range(win)
    )
    return out, attn


def test_one_gemm_per_query_row_equals_one_per_window_row() -> None:
    torch.manual_seed(5)
    q, k = torch.randn(2, 9, 13, 16) * 0.3, torch.randn(2, 9, 13, 16)
    v, rel = torch.randn(2, 9, 13, 40), torch.randn(2, 9, 13, 49)
    out, attn = local_attention(q, k, v, 3, rel)
    ref_out, ref_attn = _local_attention_per_window_row(q, k, v, 3, rel)
    assert torch.equal(attn, ref_attn)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)


def _long_term(session, track):
    memory = session._tracks[track].slots[(0, 0)].long_term
    return [memory.layer(i) for i in range(len(memory._keys))]


def test_re_adding_the_last_reference_copies_exactly_what_it_would_compute(family: str) -> None:
    """The backward pass's second key-frame reference: reused (same encoded frame object)
    against recomputed (the frame encoded again), then both propagate on."""
    net = tiny_network(family)
    frames, labels = synthetic_video(frames=5)
    propagator = Propagator(net, long_term_gap=2)
    sessions = {"reused": propagator.new_session(), "recomputed": propagator.new_session()}
    results = {}
    for name, session in sessions.items():
        key = session.encode(frames[2])
        session.add_reference(key, labels[2], frame_step=0)
        for t in (3, 4):
            session.step(frames[t])
        again = key if name == "reused" else session.encode(frames[2])
        session.add_reference(again, labels[2], frame_step=0)
        results[name] = [session.step(frames[t])["main"].probs for t in (1, 0)]
    assert sessions["reused"].stats["reference_reuses"] == 1
    assert sessions["recomputed"].stats["reference_reuses"] == 0
    for new, old in zip(*(_long_term(s, "main") for s in sessions.values()), strict=True):
        assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1])
    for new, old in zip(results["reused"], results["recomputed"], strict=True):
        assert torch.equal(new, old)


def test_a_changed_mask_or_new_object_is_propagated_again() -> None:
    net = tiny_network("deaot")
    frames, labels = synthetic_video(frames=3)
    session = Propagator(net, long_term_gap=9999).new_session()
    key = session.encode(frames[0])
    session.add_reference(key, labels[0] == 1, track="t")
    session.step(frames[1])
    other = labels[0] == 1
    other[0, 0] = True
    session.add_reference(key, other, track="t")  # another mask
    assert session.stats["reference_reuses"] == 0
    session.add_reference(key, other, track="t")  # the same again: reused
    assert session.stats["reference_reuses"] == 1
    session.add_reference(key, other.long() * 2, track="t")  # object 2 joins: recomputed
    assert session.stats["reference_reuses"] == 1
    assert session.objects("t") == (1, 2)
    assert session.long_term_frames("t") == 4


@pytest.mark.parametrize("mode", ["faithful", "fresh"])
def test_protocol_results_with_reused_references_equal_recomputed_ones(mode: str) -> None:
    frames, labels = synthetic_video(frames=6)
    masks = {"a": labels == 1, "b": labels == 2, "c": labels > 0}
    keys = {"a": 2, "b": 2, "c": 4}
    propagator = Propagator(tiny_network("aot"), long_term_gap=2)
    runs = {}
    for cache in (2**30, 0):  # 0: the backward sweep encodes its frames again
        stats: dict[str, int] = {}
        config = ProtocolConfig(mode=mode, feature_cache_bytes=cache, return_probs=True)
        runs[cache] = (propagate_video(propagator, frames, masks, keys, config, stats), stats)
    (reused, reused_stats), (recomputed, recomputed_stats) = runs[2**30], runs[0]
    assert reused_stats["reference_reuses"] == (3 if mode == "faithful" else 0)
    assert recomputed_stats["reference_reuses"] == 0
    for exp in masks:
        assert torch.equal(reused[exp].masks, recomputed[exp].masks)
        assert torch.equal(reused[exp].probs, recomputed[exp].probs)


def test_a_reference_keeps_its_memory_position_through_growth_and_eviction() -> None:
    memory = LongTermMemory(cap=2)

    def frame(value: float):
        return [(torch.full((1, 3, 2), value), torch.full((1, 3, 4), -value))]

    first = memory.add(frame(1.0), reference=True)
    for value in range(2, 9):  # grows the buffers, then evicts propagated frames
        memory.add(frame(float(value)), reference=False)
    second = memory.add(frame(9.0), reference=True)
    assert memory.num_frames == 4 and first is not None and second is not None
    for position, value in ((first, 1.0), (second, 9.0)):
        [(key, val)] = memory.frame(position)
        assert torch.equal(key, frame(value)[0][0]) and torch.equal(val, frame(value)[0][1])
    assert LongTermMemory(cap=0).add(frame(1.0), reference=False) is None
    with pytest.raises(IndexError, match="no frame 4"):
        memory.frame(4)
