"""The Cutie port: strict checkpoint keys, the resize / pad / stagger rules, the memories, the
engine session protocol on random weights, and parity with the official code
(``tests/parity/cutie_small``, ``cutie_base``; made by ``bench/parity/make_cutie_cases.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.shared.checkpoint import KeyMismatchError
from models.shared.parity_case import ParityCase
from tests.parity.recipe import load_official_state
from vos.cutie.convert import infer_variant, load_official
from vos.cutie.engine import CutieEngine, build_cutie_engine, cutie_variant_problem
from vos.cutie.inference import (
    CutieProcessor,
    encode_frame,
    internal_size,
    pad_amounts,
    prepare_frame,
)
from vos.cutie.memory import KeyValueStore, top_k_softmax
from vos.cutie.network import CutieNetwork
from vos.cutie.parity import run_parity
from vos.cutie.spec import (
    CutieSettings,
    CutieSpec,
    LongTermSettings,
    get_cutie_variant,
    spec_to_dict,
)
from vos.engine import EngineSession, PropagationEngine, StepOutput
from vos.engine_inputs import EngineBuildError, EngineWeights, PropagatorOptions
from vos.protocol import ProtocolConfig, propagate_video

CASES = Path(__file__).resolve().parents[1] / "parity"

TINY = CutieSpec(
    name="tiny",
    pixel_encoder="resnet18",
    ms_dims=(256, 128, 64),
    pixel_dim=32,
    key_dim=16,
    value_dim=32,
    sensory_dim=32,
    embed_dim=32,
    num_queries=4,
    num_blocks=1,
    num_heads=2,
    ff_dim=64,
    up_dims=(32, 16, 16),
)


def tiny_network(seed: int = 0) -> CutieNetwork:
    torch.manual_seed(seed)
    net = CutieNetwork(TINY).eval()
    with torch.no_grad():
        net.mask_decoder.pred.bias.fill_(-1.0)
    return net


def video(frames: int = 6, height: int = 72, width: int = 88) -> tuple[torch.Tensor, torch.Tensor]:
    """T x 3 x H x W uint8 with two moving squares, and their T x H x W ids."""
    g = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 60, (frames, 3, height, width), generator=g, dtype=torch.uint8)
    labels = torch.zeros(frames, height, width, dtype=torch.long)
    for t in range(frames):
        clip[t, :, 8 + t : 28 + t, 10 + 2 * t : 30 + 2 * t] = 220
        labels[t, 8 + t : 28 + t, 10 + 2 * t : 30 + 2 * t] = 1
        clip[t, 1, 40 - t : 60 - t, 50:70] = 200
        labels[t, 40 - t : 60 - t, 50:70] = 2
    return clip, labels


# --- checkpoint keys --------------------------------------------------------------------------


def test_official_variants_load_strictly_and_skip_only_the_aux_head() -> None:
    net = CutieNetwork(get_cutie_variant("small"))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["aux_computer.sensory_aux.projection.weight"] = torch.zeros(257, 256, 1, 1)
    report = load_official(CutieNetwork(get_cutie_variant("cutie-small-mega")), state)
    assert list(report.skipped) == ["aux_computer.sensory_aux.projection.weight"]
    assert len(report.loaded) == len(net.state_dict())
    assert infer_variant(state) == "small"
    assert infer_variant(CutieNetwork(get_cutie_variant("base")).state_dict()) == "base"


def test_missing_or_unexpected_key_fails() -> None:
    net = CutieNetwork(TINY)
    state = dict(net.state_dict())
    missing = {k: v for k, v in state.items() if k != "object_transformer.query_init.weight"}
    with pytest.raises(KeyMismatchError, match="query_init"):
        load_official(CutieNetwork(TINY), missing)
    with pytest.raises(KeyMismatchError, match=r"mask_encoder\.layer4"):
        load_official(
            CutieNetwork(TINY),
            {**state, "mask_encoder.layer4.0.conv1.weight": state["mask_encoder.conv1.weight"]},
        )


def test_single_object_checkpoint_gets_a_zero_channel() -> None:
    net = CutieNetwork(TINY)
    state = dict(net.state_dict())
    state["mask_encoder.conv1.weight"] = torch.ones(64, 4, 7, 7)
    state["pixel_fuser.sensory_compress.weight"] = torch.ones(32, TINY.sensory_dim + 1, 1, 1)
    load_official(net, state)
    assert torch.equal(net.mask_encoder.conv1.weight[:, 4], torch.zeros(64, 7, 7))
    assert torch.equal(net.pixel_fuser.sensory_compress.weight[:, -1], torch.zeros(32, 1, 1))


def test_construction_downloads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("download attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    CutieNetwork(get_cutie_variant("small"))


# --- rules --------------------------------------------------------------------------------------


def test_resize_rule_brings_the_short_side_down_only() -> None:
    assert internal_size(1080, 1920, 480) == (480, 853)
    assert internal_size(1920, 1080, 480) == (853, 480)
    assert internal_size(400, 600, 480) == (400, 600)
    assert internal_size(1080, 1920, -1) == (1080, 1920)


def test_padding_and_restore() -> None:
    assert pad_amounts(88, 120) == (4, 4, 4, 4)
    assert pad_amounts(81, 100) == (6, 6, 7, 8)
    frame = torch.randint(0, 255, (3, 100, 150), dtype=torch.uint8)
    prepared = prepare_frame(frame, CutieSettings(max_internal_size=80, flip_aug=True))
    assert prepared.resized == (80, 120)
    assert tuple(prepared.image.shape) == (2, 3, 80, 128)
    assert torch.equal(prepared.image[1], prepared.image[0].flip(-1))
    assert tuple(prepared.restore(torch.rand(3, 80, 128)).shape) == (3, 100, 150)
    mask = torch.zeros(100, 150, dtype=torch.long)
    mask[10:50, 20:60] = 2
    assert set(prepared.prepare_mask(mask).unique().tolist()) == {0, 2}


def test_stagger_steps_follow_the_official_linspace() -> None:
    assert CutieSettings(mem_every=5, stagger_updates=5).stagger_steps == {1, 2, 3, 4, 5}
    assert CutieSettings(mem_every=3, stagger_updates=2).stagger_steps == {1, 3}
    expected = set(np.round(np.linspace(1, 10, 4)).astype(int).tolist())
    assert CutieSettings(mem_every=10, stagger_updates=4).stagger_steps == expected


# --- memory -------------------------------------------------------------------------------------


def test_working_memory_keeps_the_first_frame_and_a_fifo() -> None:
    memory = KeyValueStore()
    for t in range(5):
        key = torch.full((1, 2, 3), float(t))
        memory.add(key, key[:, :1], {7: key.clone(), 8: key.clone()}, "first")
        memory.keep_recent(0, 2 * 3)
    (bucket,) = memory.buckets.values()
    assert bucket.permanent == 3 and bucket.objects == [7, 8]
    assert bucket.key[0, 0].tolist() == [0, 0, 0, 3, 3, 3, 4, 4, 4]
    assert memory.values[8][0, 0].tolist() == [0, 0, 0, 3, 3, 3, 4, 4, 4]
    memory.add(torch.full((1, 2, 3), 9.0), torch.ones(1, 1, 3), {9: torch.zeros(1, 2, 3)}, "first")
    assert len(memory.buckets) == 2  # a new object opens its own bucket, permanent first frame


def test_top_k_softmax_caps_k_at_the_memory_size() -> None:
    sim = -torch.rand(1, 5, 7)
    affinity = top_k_softmax(sim, top_k=30)
    torch.testing.assert_close(affinity, torch.softmax(sim, dim=1))
    assert (top_k_softmax(sim, top_k=2) > 0).sum(dim=1).eq(2).all()


def test_long_term_memory_consolidates_and_stays_bounded() -> None:
    long_term = LongTermSettings(
        max_mem_frames=3, min_mem_frames=2, num_prototypes=8, max_num_tokens=24, buffer_tokens=8
    )
    settings = CutieSettings(mem_every=1, use_long_term=True, long_term=long_term)
    net = tiny_network()
    processor = CutieProcessor(net, settings)
    frames, labels = video(8)
    sizes = []
    for t in range(8):
        enc = encode_frame(net, frames[t], settings)
        processor.step(enc, labels[0] if t == 0 else None)
        assert processor.memory.long is not None
        long_bucket = processor.memory.long.buckets.get(0)
        sizes.append(0 if long_bucket is None else long_bucket.size)
        work = processor.memory.work.buckets[0]
        assert work.permanent == 30 and work.temporary <= 2 * 30  # 80 x 96 padded: 5 x 6 tokens
    # at >= 24 - 8 tokens the long-term memory keeps its 24 - 8 - 8 most used, then adds 8
    assert sizes == [0, 0, 8, 16, 16, 16, 16, 16]


# --- engine session -----------------------------------------------------------------------------


def test_engine_satisfies_the_protocol() -> None:
    engine = CutieEngine(tiny_network())
    session = engine.new_session()
    assert isinstance(engine, PropagationEngine) and isinstance(session, EngineSession)
    frames, labels = video(3)
    session.add_reference(session.encode(frames[0]), labels[0], track="a")
    out = session.step(session.encode(frames[1]))["a"]
    assert isinstance(out, StepOutput)
    assert tuple(out.probs.shape) == (3, 72, 88)
    torch.testing.assert_close(out.probs.sum(0), torch.ones(72, 88))
    assert set(out.labels.unique().tolist()) <= {0, 1, 2}
    assert torch.equal(out.foreground, out.labels > 0)


def test_two_tracks_share_one_encoding_per_frame_and_stay_independent() -> None:
    engine = CutieEngine(tiny_network(), CutieSettings(mem_every=2, max_mem_frames=3))
    frames, labels = video(6)
    masks = {"a": labels == 1, "b": labels > 0}
    keys = {"a": 2, "b": 3}
    stats: dict[str, int] = {}
    config = ProtocolConfig(return_probs=True)
    together = propagate_video(engine, frames, masks, keys, config, stats=stats)
    # forward sweep 2..5, backward sweep 3..0 (3 and 2 from the cache): each frame once
    assert stats["encoder_calls"] == 6
    for exp in masks:
        alone = propagate_video(engine, frames, {exp: masks[exp]}, {exp: keys[exp]}, config)[exp]
        assert torch.equal(alone.masks, together[exp].masks)
        assert alone.probs is not None and together[exp].probs is not None
        # float16 probabilities: the batched tracks' float32 rounding may move one value by
        # one float16 step (4.9e-4 below 1); tests/vos/test_cutie_batching.py bounds it at 1e-5
        torch.testing.assert_close(
            alone.probs.float(), together[exp].probs.float(), atol=1e-3, rtol=0
        )


def test_reference_re_added_to_a_track_is_a_temporary_memory_frame() -> None:
    engine = CutieEngine(tiny_network(), CutieSettings(mem_every=5))
    session = engine.new_session()
    frames, labels = video(4)
    enc = session.encode(frames[1])
    session.add_reference(enc, labels[1], track="t")
    session.step(session.encode(frames[2]))
    before = session.memory_bytes()
    session.add_reference(enc, labels[1], track="t", frame_step=0)
    processor = session.processor("t")
    (bucket,) = processor.memory.work.buckets.values()
    assert bucket.permanent * 2 == bucket.size  # the permanent first frame + the re-added one
    assert processor.last_mem_ti == processor.curr_ti == 2
    assert session.memory_bytes() > before
    session.drop_track("t")
    session.drop_track("unknown")
    assert session.memory_bytes() == 0 and session.tracks == []


def test_flip_augmentation_runs_and_averages() -> None:
    net = tiny_network()
    frames, labels = video(3)
    for flip in (False, True):
        session = CutieEngine(net, CutieSettings(flip_aug=flip)).new_session()
        session.add_reference(frames[0], labels[0], track=0)
        out = session.step(frames[1])[0]
        assert tuple(out.probs.shape) == (3, 72, 88) and torch.isfinite(out.probs).all()


def test_new_track_needs_an_object_and_steps_need_a_reference() -> None:
    session = CutieEngine(tiny_network()).new_session()
    frames, _ = video(2)
    with pytest.raises(ValueError, match="no object"):
        session.add_reference(frames[0], torch.zeros(72, 88, dtype=torch.bool), track="e")
    with pytest.raises(KeyError):
        session.step(frames[1], tracks=["e"])


def test_builder_official_and_project_layouts() -> None:
    net = tiny_network()
    state = net.state_dict()
    project = EngineWeights.project(state, spec_to_dict(TINY), where="tiny.safetensors")
    engine = build_cutie_engine("cutie", project, PropagatorOptions(flip=True, long_term_gap=3))
    assert engine.settings.flip_aug and engine.settings.mem_every == 3
    official = EngineWeights.official(
        CutieNetwork(get_cutie_variant("small")).state_dict(), "small"
    )
    assert build_cutie_engine("cutie", official, PropagatorOptions()).network.spec.name == "small"
    unnamed = EngineWeights.official(dict(official.state), "")
    assert build_cutie_engine("cutie", unnamed, PropagatorOptions()).network.spec.name == "small"
    with pytest.raises(EngineBuildError, match="family"):
        build_cutie_engine("aot", project, PropagatorOptions())
    with pytest.raises(EngineBuildError, match="one scale"):
        build_cutie_engine("cutie", project, PropagatorOptions(scales=(0.8, 1.0)))
    assert (
        cutie_variant_problem("base") is None and cutie_variant_problem("cutie-small-mega") is None
    )
    assert "unknown Cutie variant" in str(cutie_variant_problem("large"))
    with pytest.raises(EngineBuildError, match="unknown Cutie variant"):
        build_cutie_engine("cutie", EngineWeights.official(state, "large"), PropagatorOptions())


# --- parity with the official code ----------------------------------------------------------------


def _load_case(name: str) -> ParityCase:
    folder = CASES / name
    if not (folder / "expected.npz").is_file():
        pytest.skip(f"parity case {folder} is absent (make it: bench/parity/make_cutie_cases.py)")
    config = json.loads((folder / "config.json").read_text())
    inputs = dict(np.load(folder / "inputs.npz"))
    return ParityCase(name, config, load_official_state(folder), inputs, folder)


@pytest.mark.parametrize("name", ["cutie_small", "cutie_base"])
def test_parity_with_the_official_inference_core(name: str) -> None:
    case = _load_case(name)
    expected = dict(np.load(case.directory / "expected.npz"))  # type: ignore[operator]
    actual = run_parity(case)
    for array, check in case.config["checks"].items():
        got, want = actual[array], expected[array]
        assert got.shape == want.shape, array
        if check.get("exact"):
            np.testing.assert_array_equal(got, want, err_msg=array)
        elif "min_agreement" in check:
            agreement = (got == want).reshape(len(want), -1).mean(axis=1)
            assert agreement.min() >= check["min_agreement"], (array, agreement)
        else:
            bound = check["atol"] + check["rtol"] * np.abs(want)
            assert (np.abs(got - want) <= bound).all(), (array, np.abs(got - want).max())


def test_the_small_case_catches_a_wrong_memory_schedule() -> None:
    case = _load_case("cutie_small")
    config = json.loads(json.dumps(case.config))
    config["settings"]["mem_every"] = 4
    wrong = ParityCase(case.name, config, case.state, case.inputs, case.directory)
    expected = np.load(case.directory / "expected.npz")["probs"]  # type: ignore[operator]
    assert np.abs(run_parity(wrong)["probs"] - expected).max() > 0.05
