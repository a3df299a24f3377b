"""vos.build: the engine registry, both weight layouts, its errors and the propagator options."""

from __future__ import annotations

import pytest
import torch

from tests.vos.conftest import synthetic_video, tiny_network, tiny_spec
from tests.vos.test_convert import official_layout
from vos.build import (
    ENGINE_FAMILIES,
    ENGINES,
    EngineBuildError,
    EngineRecord,
    EngineWeights,
    PropagatorOptions,
    build_engine,
    variant_problem,
)
from vos.engine import PropagationEngine
from vos.preprocess import ResizeRule
from vos.protocol import propagate_video
from vos.session import Propagator, TTAConfig
from vos.variants import spec_to_dict

torch.set_num_threads(1)


def _weights(family: str, layout: str, where: str = "weights.bin") -> EngineWeights:
    source = tiny_network(family, seed=4)
    if layout == "official":
        return EngineWeights.official(official_layout(source), f"{family}_tiny", where)
    return EngineWeights.project(source.state_dict(), spec_to_dict(tiny_spec(family)), where)


def test_the_registry_lists_every_engine_with_its_parity_module() -> None:
    assert ENGINE_FAMILIES == ("aot", "deaot", "cutie", "sam2") == tuple(ENGINES)
    for family, record in ENGINES.items():
        assert isinstance(record, EngineRecord) and record.family == family
        assert callable(record.parity.run_parity) and callable(record.parity.convert_parity)
    for family in ("aot", "deaot"):
        assert ENGINES[family].variant_problem(f"{family}_tiny") is None
    assert ENGINES["cutie"].variant_problem("small") is None
    assert ENGINES["cutie"].variant_problem("huge") is not None
    assert ENGINES["sam2"].variant_problem("sam2.1_hiera_large") is None
    assert ENGINES["sam2"].variant_problem("sam2.1_hiera_huge") is not None
    assert variant_problem("deaot", "r50_deaotl") is None
    assert "unknown AOT/DeAOT variant 'nope'" in str(variant_problem("aot", "nope"))


def test_both_layouts_build_the_same_engine(family: str) -> None:
    engines = [build_engine(family, _weights(family, layout)) for layout in ("official", "project")]
    assert all(isinstance(e, Propagator) and isinstance(e, PropagationEngine) for e in engines)
    frames, labels = synthetic_video(frames=4)
    masks = {"0": (labels == 1)}
    first, second = (propagate_video(e, frames, masks, {"0": 1})["0"] for e in engines)
    assert torch.equal(first.masks, second.masks)
    assert not engines[0].network.training  # type: ignore[attr-defined]


@pytest.mark.parametrize("layout", ["official", "project"])
def test_a_network_of_another_family_names_the_weights(layout: str) -> None:
    with pytest.raises(EngineBuildError, match=r"^ckpt/a\.bin: a aot network, but .* deaot$"):
        build_engine("deaot", _weights("aot", layout, "ckpt/a.bin"))


def test_unknown_variant_family_and_missing_config_are_build_errors() -> None:
    official = _weights("aot", "official", "ckpt/a.pth")
    unknown = EngineWeights.official(official.state, "nope", where="ckpt/a.pth")
    with pytest.raises(EngineBuildError, match=r"^ckpt/a\.pth: unknown AOT/DeAOT variant 'nope'"):
        build_engine("aot", unknown)
    with pytest.raises(EngineBuildError, match=r"^ckpt/a\.pth: unknown engine family 'sam9'"):
        build_engine("sam9", official)
    with pytest.raises(EngineBuildError, match=r"^p\.safetensors: project weights need"):
        EngineWeights(official.state, "project", where="p.safetensors")
    with pytest.raises(EngineBuildError, match="layout must be one of"):
        EngineWeights(official.state, "zip")  # type: ignore[arg-type]
    assert isinstance(EngineBuildError("x"), ValueError)


def test_options_map_onto_the_propagator() -> None:
    options = PropagatorOptions(
        scales=[0.8, 1],  # type: ignore[arg-type]
        flip=True,
        memory_update="own",
        long_term_gap=4,
        long_term_cap=7,
        short_term_skip=2,
        max_long_edge=480,
        mask_unused_ids=False,
        precision="fp16",
        device="cpu",
    )
    engine = build_engine("deaot", _weights("deaot", "project"), options)
    assert isinstance(engine, Propagator)
    assert engine.tta == TTAConfig(scales=(0.8, 1.0), flip=True, memory_update="own")
    assert (engine.long_term_gap, engine.long_term_cap, engine.short_term_skip) == (4, 7, 2)
    assert engine.resize == ResizeRule(max_long_edge=480)
    assert engine.mask_unused_ids is False and engine.autocast is True
    assert engine.device == torch.device("cpu")
    default = build_engine("aot", _weights("aot", "project"))
    assert isinstance(default, Propagator)
    assert default.long_term_gap == tiny_spec("aot").long_term_gap
    assert default.tta == TTAConfig() and default.resize == ResizeRule()
    assert default.mask_unused_ids is True and default.autocast is False


def test_bad_options_are_build_errors() -> None:
    with pytest.raises(EngineBuildError, match="precision must be fp32 or fp16, not 'bf16'"):
        PropagatorOptions(precision="bf16")  # type: ignore[arg-type]
    with pytest.raises(EngineBuildError, match="at least one scale"):
        PropagatorOptions(scales=())
    with pytest.raises(EngineBuildError, match="memory update"):
        PropagatorOptions(memory_update="mean")  # type: ignore[arg-type]
