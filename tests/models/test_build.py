"""models.build: every family from project and official weights, its protocol and precision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import pytest
import torch

import models.build as build
import models.family.entry as family_entry
from models.build import BuildError, OfficialWeights, ProjectWeights
from models.family.convert import COMMON_PREFIXES
from models.mutr.convert import MUTR_LAYOUT
from models.referformer.convert import REFERFORMER_LAYOUT
from models.sgmg.build import PRESETS
from models.sgmg.build import tiny_config as sgmg_tiny
from models.sgmg.convert import rename as sgmg_rename
from models.soc.convert import SOC_LAYOUT
from models.uninext.spec import tiny_spec
from tests.models.family_helpers import tiny_family_config

WHERE = "weights/test.safetensors"
LAYOUTS = {"referformer": REFERFORMER_LAYOUT, "mutr": MUTR_LAYOUT, "soc": SOC_LAYOUT}


def _config(family: str) -> dict[str, Any]:
    if family == "sgmg":
        return asdict(sgmg_tiny(30))
    if family == "uninext":
        return asdict(tiny_spec(30))
    return asdict(tiny_family_config(family))


def _project(family: str, seed: int = 0) -> tuple[torch.nn.Module, ProjectWeights]:
    torch.manual_seed(seed)
    source = build.network_from_config(family, _config(family))
    return source, ProjectWeights(_config(family), source.state_dict(), WHERE)


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for key, value in sa.items():
        torch.testing.assert_close(sb[key], value, rtol=0, atol=0)


def _official(state: Mapping[str, torch.Tensor], prefixes: Sequence[tuple[str, str]]) -> dict:
    """A port state dict under the official names (the first (official, port) pair that fits)."""
    out = {}
    for key, value in state.items():
        for official, port in prefixes:
            if key.startswith(port):
                key = official + key[len(port) :]
                break
        out[key] = value.clone()
    return out


def test_the_registry_names_every_family_and_its_tokenizer() -> None:
    assert build.PRODUCER_FAMILIES == ("sgmg", "referformer", "mutr", "soc", "uninext")
    assert build.tokenizer_name("uninext") == "bert-base-uncased"
    assert {build.tokenizer_name(f) for f in ("sgmg", "referformer", "mutr", "soc")} == {
        "roberta-base"
    }
    assert all(build.FAMILIES[f].parity is not None for f in build.PRODUCER_FAMILIES)


@pytest.mark.parametrize("family", ["sgmg", "referformer", "mutr", "soc", "uninext"])
def test_each_family_builds_from_project_weights(family: str) -> None:
    source, weights = _project(family)
    network = build.build_network(family, weights)
    assert not network.training
    _assert_same_state(source, network)


@pytest.mark.parametrize("family", ["referformer", "mutr", "soc"])
def test_family_leaves_build_from_official_weights(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = tiny_family_config(family)
    monkeypatch.setattr(family_entry, "released_config", lambda model, size: tiny)
    source, _ = _project(family)
    prefixes = (*COMMON_PREFIXES, *LAYOUTS[family].prefixes)
    container = LAYOUTS[family].containers[0]
    checkpoint = {container: _official(source.state_dict(), prefixes)}
    network = build.build_network(family, OfficialWeights(checkpoint, "vswint", WHERE))
    _assert_same_state(source, network)


def test_sgmg_builds_from_official_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PRESETS, "video_swin_t", sgmg_tiny(30))
    source, _ = _project("sgmg")
    prefixes = (
        ("backbone.0.body.", "backbone."),
        ("text_encoder.text_backbone.", "text_encoder.model."),
        ("transformer.decoder.bbox_embed.", "bbox_embed."),
    )
    official = _official(source.state_dict(), prefixes)
    assert all(sgmg_rename(k) in source.state_dict() for k in official)
    network = build.build_network("sgmg", OfficialWeights({"model": official}, "vswint", WHERE))
    _assert_same_state(source, network)


@pytest.mark.parametrize("family", ["sgmg", "referformer", "uninext"])
def test_an_unknown_variant_names_the_file(family: str) -> None:
    with pytest.raises(BuildError, match=f"^{WHERE}: .*variant"):
        build.build_network(family, OfficialWeights({"model": {}}, "vswinx", WHERE))


def test_an_unknown_family_or_dataset_names_the_file() -> None:
    _, weights = _project("referformer")
    with pytest.raises(BuildError, match=f"^{WHERE}: unknown producer family 'nope'"):
        build.build_producer("nope", weights, dataset="ytvos")
    with pytest.raises(BuildError, match=f"^{WHERE}: unknown dataset"):
        build.build_producer("referformer", weights, dataset="kitti")
    with pytest.raises(BuildError):
        build.tokenizer_name("nope")


def test_a_config_of_another_leaf_names_the_file() -> None:
    _, weights = _project("mutr")
    with pytest.raises(BuildError, match=f"^{WHERE}: holds a mutr config, not soc"):
        build.build_network("soc", weights)


@pytest.mark.parametrize("family", ["sgmg", "mutr", "uninext"])
def test_unknown_options_name_the_file(family: str) -> None:
    _, weights = _project(family)
    with pytest.raises(BuildError, match=f"^{WHERE}: .*bogus"):
        build.build_producer(family, weights, dataset="ytvos", options={"bogus": 1})


def test_options_override_the_family_protocol() -> None:
    _, weights = _project("mutr")
    official = build.build_producer("mutr", weights, dataset="davis")
    assert (official.protocol.short_side, official.protocol.clip_length) == (432, 64)
    tuned = build.build_producer("mutr", weights, dataset="davis", options={"short_side": 360})
    assert (tuned.protocol.short_side, tuned.protocol.clip_length) == (360, 64)
    _, weights = _project("soc")
    soc = build.build_producer("soc", weights, dataset="mevis", options={"clip_length": 12})
    assert (soc.protocol.short_side, soc.protocol.max_size, soc.protocol.clip_length) == (
        360,
        640,
        12,
    )


def test_options_override_the_sgmg_and_uninext_protocols() -> None:
    _, weights = _project("sgmg")
    sgmg = build.build_producer("sgmg", weights, dataset="davis", options={"short_side": 160})
    assert (sgmg.protocol.short_side, sgmg.protocol.clip_length) == (160, 36)
    _, weights = _project("uninext")
    uninext = build.build_producer(
        "uninext", weights, dataset="ytvos", options={"short_side": 96, "max_size": 200}
    )
    assert (uninext.model.spec.min_size, uninext.model.spec.max_size) == (96, 200)


def test_autocast_applies_only_on_cuda() -> None:
    _, weights = _project("referformer")
    plain = build.build_producer("referformer", weights, dataset="ytvos", precision="fp16")
    assert not isinstance(plain, build.AutocastProducer)
    wrapped = build.with_precision(plain, "bf16", torch.device("cuda"))
    assert isinstance(wrapped, build.AutocastProducer) and wrapped.dtype == torch.bfloat16
    assert build.with_precision(plain, "fp32", torch.device("cuda")) is plain
    with pytest.raises(BuildError, match="precision"):
        build.build_producer("referformer", weights, dataset="ytvos", precision="fp8")
