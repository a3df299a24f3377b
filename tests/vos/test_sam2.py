"""SAM 2 / SAM 2.1 (vos.sam2): parity with the official package, strict key accounting of every
official variant, and the engine-session protocol on small random models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.shared.checkpoint import CheckpointError, KeyMismatchError
from pipeline.adapters.parity import compare, list_cases, read_case
from tests.vos.conftest import synthetic_video
from vos.engine import EngineSession, FrameEncoding, PropagationEngine, StepOutput
from vos.engine_inputs import EngineBuildError, EngineWeights, PropagatorOptions
from vos.protocol import ProtocolConfig, propagate_video
from vos.sam2 import parity
from vos.sam2.convert import load_official
from vos.sam2.engine import Sam2Engine, build_sam2_engine, sam2_variant_problem
from vos.sam2.model import Sam2Model
from vos.sam2.postprocess import fill_holes
from vos.sam2.spec import VARIANTS, Sam2Options, get_sam2_variant, spec_from_dict, spec_to_dict
from vos.sam2.tracker import MAX_OBJ_PTRS, ObjectTrack

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
CASE_ROOT = ROOT / "tests" / "parity"
KEY_LISTS = ROOT / "third_party" / "sam2"
SAM2_CASES = [c for c in list_cases(CASE_ROOT) if c.name.startswith("sam2")]


def _official_keys(variant: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in (KEY_LISTS / f"{variant}.keys").read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split("\t")
            rows.append((name, tuple(int(d) for d in shape.split("x")) if shape else ()))
    return rows


# -- parity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SAM2_CASES, ids=lambda c: c.name)
def test_parity_case(case: Path) -> None:
    sam2_case, expected = read_case(case)
    if not sam2_case.is_full:
        report = parity.convert_parity(sam2_case)
        assert len(report.loaded) == len(sam2_case.state) and not report.skipped
        return
    outputs = parity.run_parity(sam2_case)
    results = [
        compare(name, outputs.get(name), expected[name], rule)
        for name, rule in sam2_case.config["checks"].items()
    ]
    failed = [f"{r.array}: {r.detail}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)


def test_protocol_reproduces_the_official_forward_then_reverse_run() -> None:
    """vos.protocol.propagate_video (one track per object, the engine's own resize) against the
    official two-object run of the tiny case: the backward sweep's re-added key frame turns the
    tracks round as propagate_in_video(reverse=True) does."""
    tiny = CASE_ROOT / "sam2_1_hiera_tiny"
    if not (tiny / "expected.npz").is_file():
        pytest.skip(f"{tiny} absent: make it with bench/parity/make_sam2_cases.py")
    case, expected = read_case(tiny)
    model, _ = parity.build_case_model(case)
    frames = torch.from_numpy(case.inputs["frames_uint8"]).permute(0, 3, 1, 2).contiguous()
    num_frames = int(frames.shape[0])

    engine = Sam2Engine(model, Sam2Options(fill_hole_area=0))  # the protocol passes num_frames
    prompts = torch.from_numpy(case.inputs["prompt_masks"])
    key = int(case.config["protocol"]["key_frame"])
    masks = {obj: prompts[obj][None].expand(num_frames, -1, -1).clone() for obj in (0, 1)}
    results = propagate_video(engine, frames, masks, dict.fromkeys(masks, key))
    for obj in (0, 1):
        official = torch.from_numpy(expected["video_masks"][:, obj] > 0)
        agreement = (results[obj].masks == official).flatten(1).float().mean(1)
        assert agreement.min() >= 0.999, agreement


def test_parity_cases_present_or_skipped() -> None:
    if not SAM2_CASES:
        pytest.skip(
            f"no SAM 2 parity case under {CASE_ROOT}: make them with "
            "bench/parity/make_sam2_cases.py (needs the official sam2 package)"
        )
    assert any(c.name == "sam2_1_hiera_tiny" for c in SAM2_CASES)


# -- key accounting ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_model_keys_equal_the_official_key_list(variant: str) -> None:
    path = KEY_LISTS / f"{variant}.keys"
    if not path.is_file():
        pytest.skip(f"{path} absent (written by bench/parity/make_sam2_cases.py --key-lists)")
    with torch.device("meta"):
        model = Sam2Model(get_sam2_variant(variant))
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    official = _official_keys(variant)
    assert sorted(ours) == sorted(official)
    assert [k for k, _ in ours] == [k for k, _ in official]  # the checkpoint's order, too


def _random_state(variant: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: torch.randn(s) * 0.02 for k, s in _official_keys(variant)}


def test_official_checkpoint_loads_strictly_and_wrong_versions_fail() -> None:
    state = _random_state("sam2.1_hiera_tiny")
    model = Sam2Model(get_sam2_variant("sam2.1_hiera_tiny"))
    report = load_official(model, {"model": state})
    assert len(report.loaded) == 471 and not report.skipped
    assert torch.equal(model.no_obj_embed_spatial, state["no_obj_embed_spatial"])
    with pytest.raises(CheckpointError, match=r"SAM 2\.1 checkpoint"):
        load_official(Sam2Model(get_sam2_variant("sam2_hiera_tiny")), {"model": state})
    broken = dict(state)
    broken["extra.weight"] = torch.zeros(1)
    del broken["memory_attention.norm.bias"]
    with pytest.raises(KeyMismatchError, match=r"memory_attention\.norm\.bias"):
        load_official(model, {"model": broken})


def test_builder_official_and_project_layouts() -> None:
    state = _random_state("sam2.1_hiera_tiny")
    weights = EngineWeights.official({"model": state}, "sam2.1_hiera_tiny", where="t.pt")
    engine = build_sam2_engine("sam2", weights, PropagatorOptions())
    assert isinstance(engine, PropagationEngine) and isinstance(engine, Sam2Engine)
    spec = get_sam2_variant("sam2.1_hiera_tiny")
    assert spec_from_dict(spec_to_dict(spec)) == spec
    project = EngineWeights.project(engine.model.state_dict(), spec_to_dict(spec))
    again = build_sam2_engine("sam2", project, PropagatorOptions())
    assert torch.equal(again.model.no_mem_embed, engine.model.no_mem_embed)
    with pytest.raises(EngineBuildError, match="unknown SAM 2 variant"):
        build_sam2_engine("sam2", EngineWeights.official(state, "sam3_huge"), PropagatorOptions())
    with pytest.raises(EngineBuildError, match="scales"):
        build_sam2_engine("sam2", weights, PropagatorOptions(scales=(0.8, 1.0)))
    assert sam2_variant_problem("sam2_hiera_large") is None
    assert sam2_variant_problem("hiera_xl") is not None


# -- the session protocol on small random models -------------------------------------------------


def _small_engine(version: str = "2.1", num_frames: int | None = None) -> Sam2Engine:
    """A random Hiera-tiny SAM 2.x at 128 px whose propagated frames keep their masks."""
    torch.manual_seed(0)
    name = "sam2.1_hiera_tiny" if version == "2.1" else "sam2_hiera_tiny"
    model = Sam2Model(get_sam2_variant(name, image_size=128)).eval()
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(2.0)
    return Sam2Engine(model, Sam2Options(num_frames=num_frames))


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_session_satisfies_the_engine_protocol(version: str) -> None:
    engine = _small_engine(version)
    frames, labels = synthetic_video(frames=3)
    session = engine.new_session()
    assert isinstance(session, EngineSession)
    enc = session.encode(frames[0])
    assert isinstance(enc, FrameEncoding) and enc.size == tuple(frames.shape[-2:])
    assert enc.nbytes > 0
    session.add_reference(enc, labels[0], track="both", frame_step=0)
    session.add_reference(enc, labels[0] == 1, track="one", frame_step=0)
    shared = session.encode(frames[1])
    out = session.step(shared)
    assert set(out) == {"both", "one"} and session.stats["encoder_calls"] == 2
    both = out["both"]
    assert isinstance(both, StepOutput)
    assert both.probs.shape == (3, *frames.shape[-2:])
    assert torch.allclose(both.probs[0], 1 - both.probs[1:].amax(0))
    assert set(both.labels.unique().tolist()) <= {0, 1, 2}
    assert both.foreground.dtype == torch.bool and out["one"].probs.shape[0] == 2
    assert session.memory_bytes() > 0
    session.drop_track("both")
    session.drop_track("one")
    session.drop_track("never")
    assert session.memory_bytes() == 0


def test_propagate_video_runs_both_sweeps_with_one_encoding_per_frame() -> None:
    engine = _small_engine()
    frames, labels = synthetic_video(frames=5)
    masks = {"a": labels == 1, "b": labels == 2, "c": labels == 2}
    stats: dict[str, int] = {}
    results = propagate_video(
        engine, frames, masks, {"a": 2, "b": 2, "c": 4}, ProtocolConfig(), stats=stats
    )
    assert set(results) == {"a", "b", "c"}
    for exp, result in results.items():
        assert result.propagated and result.masks.shape == labels.shape
        key = {"a": 2, "b": 2, "c": 4}[exp]
        assert torch.equal(result.masks[key], masks[exp][key])
    # forward sweep 2..4 and backward sweep 4..0 (frames 2..4 cached): 5 encodings
    assert stats["encoder_calls"] == 5


def test_reverse_sweep_reads_the_forward_memories_and_flips_the_sign() -> None:
    engine = _small_engine(num_frames=8)
    frames, labels = synthetic_video(frames=6)
    session = engine.new_session()
    inner = session.inner
    inner.taps = {}
    encs = [session.encode(f) for f in frames]
    session.add_reference(encs[2], labels[2] == 1, track="t", frame_step=0)
    for t in (3, 4, 5):
        session.step(encs[t])
    session.add_reference(encs[2], labels[2] == 1, track="t", frame_step=0)
    session.step(encs[1])
    state = inner.tracks["t"]
    assert state.index == -1 and state.direction == -1
    obj = state.objects[1]
    tracker = inner.tracker
    memory, _pos, n_ptr = tracker.gather_memory(obj, -2, reverse=True)
    # reverse from -2: memories of -1 (t_pos 6), the cond frame 0, forward frames 1..3; pointers
    # of the cond frame and of frames -1, 1, 2, 3 (4 tokens each)
    assert n_ptr == 4 * 5
    h = engine.model.spec.feat_size
    assert memory.shape[1] == 5 * h * h + n_ptr
    indices = [index for index, _rev, _r in inner.taps[("t", 1)]]
    reverse = [rev for _index, rev, _r in inner.taps[("t", 1)]]
    assert indices == [0, 1, 2, 3, 0, -1] and reverse[-1] and not reverse[1]


def test_memory_stays_bounded_on_a_long_video() -> None:
    engine = _small_engine()
    frames, labels = synthetic_video(frames=2, height=32, width=32)
    session = engine.new_session()
    enc = session.encode(frames[0])
    session.add_reference(enc, labels[0] == 1, track="t", frame_step=0)
    sizes = []
    for _ in range(40):
        session.step(enc)
        sizes.append(session.memory_bytes())
    obj: ObjectTrack = session.inner.tracks["t"].objects[1]
    kept = sorted(obj.non_cond)
    with_features = [t for t in kept if obj.non_cond[t].features is not None]
    # behind frame 40: 15 pointers (26..40), 6 memories (35..40); after the conditioning
    # frame 0, what a reverse sweep from it would read: 14 pointers, 5 memories
    assert kept == [*range(1, MAX_OBJ_PTRS - 1), *range(41 - (MAX_OBJ_PTRS - 1), 41)]
    assert with_features == [1, 2, 3, 4, 5, 35, 36, 37, 38, 39, 40]
    assert sizes[-1] == sizes[-5]  # no growth once the window is full


def test_stability_fallback_and_multimask_choice_shapes() -> None:
    spec = replace(get_sam2_variant("sam2.1_hiera_tiny"), image_size=64)
    torch.manual_seed(0)
    model = Sam2Model(spec).eval()
    with torch.no_grad():
        feats = model.encode_image(torch.randn(1, 3, 64, 64))
        mask = torch.zeros(1, 1, 64, 64)
        mask[..., 10:30, 12:40] = 1
        out = model.mask_as_output(feats, mask)
        assert out.low_res.shape == (1, 1, 16, 16) and out.high_res.shape == (1, 1, 64, 64)
        assert float(out.object_score) == 10.0
        empty = model.mask_as_output(feats, torch.zeros_like(mask))
        assert float(empty.object_score) == -10.0
        assert torch.allclose(empty.obj_ptr, model.no_obj_ptr)
        heads = model.heads(model.condition_first_frame(feats), feats.high_res, None, True)
        assert heads.obj_ptr.shape == (1, 256) and heads.low_res.shape == (1, 1, 16, 16)


def test_empty_references() -> None:
    engine = _small_engine()
    frames, _labels = synthetic_video(frames=2, height=32, width=40)
    session = engine.new_session()
    enc = session.encode(frames[0])
    empty = torch.zeros(32, 40, dtype=torch.bool)
    session.add_reference(enc, empty, track="absent", frame_step=0)  # object 1, absent
    session.add_reference(enc, empty.long(), track="none", frame_step=0)  # no object at all
    out = session.step(session.encode(frames[1]))
    assert out["absent"].object_ids == (1,) and out["absent"].probs.shape == (2, 32, 40)
    assert out["none"].object_ids == () and torch.equal(out["none"].probs, torch.ones(1, 32, 40))
    assert not out["none"].foreground.any() and not out["none"].labels.any()


def test_fill_holes_matches_scipy_labelling() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        h, w = (int(v) for v in torch.randint(4, 30, (2,), generator=g))
        logits = torch.randn(2, 1, h, w, generator=g) + 0.4
        filled = fill_holes(logits, 8)
        for i in range(2):
            background = (logits[i, 0] <= 0).numpy()
            labels, _n = ndimage.label(background, structure=[[1, 1, 1]] * 3)
            areas = torch.bincount(torch.from_numpy(labels).flatten()).numpy()
            holes = torch.from_numpy((labels > 0) & (areas[labels] <= 8))
            assert torch.equal(filled[i, 0] == 0.1, holes | (logits[i, 0] == 0.1))
            assert torch.equal(filled[i, 0][~holes], logits[i, 0][~holes])


def test_non_overlap_masks_keeps_one_object_per_pixel() -> None:
    engine = _small_engine()
    engine.options = replace(engine.options, non_overlap_masks=True)
    frames, labels = synthetic_video(frames=2, height=32, width=40)
    session = engine.new_session()
    enc = session.encode(frames[0])
    ids = labels[0].clone()
    ids[0:8, 0:8] = 3  # a third object overlapping nothing
    session.add_reference(enc, ids, track="t", frame_step=0)
    out = session.step(session.encode(frames[1]))["t"]
    assert out.object_ids == (1, 2, 3)
    assert ((out.logits > -10).sum(0) <= 1).all()
