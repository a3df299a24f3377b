"""Official checkpoint conversion: strict key accounting and architecture inference."""

from __future__ import annotations

import re

import pytest
import torch

from models.shared.checkpoint import CheckpointError, KeyMismatchError
from tests.vos.conftest import tiny_network, tiny_spec
from vos.convert import (
    check_spec_matches,
    complete_encoder_spec,
    load_official,
    official_state_dict,
)
from vos.deaot import build_network
from vos.variants import EncoderSpec


def official_layout(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The network's weights under the official key names (as aot-benchmark saves them)."""
    state = {}
    for key, value in net.state_dict().items():
        key = re.sub(r"^propagation\.", "LSTT.", key)
        key = re.sub(r"^id_bank\.", "patch_wise_id_bank.", key)
        state[key] = value.clone()
    return state


def test_round_trip_with_wrappers_prefix_and_mask_token(family: str) -> None:
    source = tiny_network(family, seed=1)
    official = official_layout(source)
    official["LSTT.mask_token"] = torch.zeros(1, 1, source.spec.d_model)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in official.items()}, "optimizer": {}}
    target = build_network(tiny_spec(family))
    report = load_official(target, official_state_dict(wrapped), what="test")
    assert set(report.skipped) == {"module.LSTT.mask_token"}
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_missing_unexpected_and_mis_shaped_keys_are_listed(family: str) -> None:
    official = official_layout(tiny_network(family))
    del official["decoder.conv_out.weight"]
    official["LSTT.layers.0.extra.weight"] = torch.zeros(3)
    official["encoder_projector.bias"] = torch.zeros(7)
    with pytest.raises(KeyMismatchError) as err:
        load_official(build_network(tiny_spec(family)), official, what="bad checkpoint")
    assert err.value.missing == ["decoder.conv_out.weight"]
    assert err.value.unexpected == ["propagation.layers.0.extra.weight"]
    assert len(err.value.mismatched) == 1 and "encoder_projector.bias" in err.value.mismatched[0]
    message = str(err.value)
    for key in ("decoder.conv_out.weight", "propagation.layers.0.extra.weight", "(7,)"):
        assert key in message


def test_wrong_family_or_depth_fails_early() -> None:
    deaot = official_layout(tiny_network("deaot"))
    with pytest.raises(CheckpointError, match="DEAOT model but variant"):
        check_spec_matches(tiny_spec("aot"), deaot)
    with pytest.raises(CheckpointError, match="1 propagation layers"):
        check_spec_matches(tiny_spec("deaot", num_layers=2), deaot)


def test_encoder_size_is_read_from_the_weights() -> None:
    spec = tiny_spec(
        "aot",
        encoder=EncoderSpec(
            "swin",
            swin_embed_dim=32,
            swin_depths=(2, 2, 2, 2),
            swin_heads=(1, 2, 4, 8),
            swin_window=5,
        ),
        align_corners=False,
    )
    state = official_layout(build_network(spec))
    guess = tiny_spec(
        "aot",
        encoder=EncoderSpec("swin", swin_embed_dim=128, swin_window=7),
        align_corners=False,
    )
    completed = complete_encoder_spec(guess, state)
    assert completed.encoder.swin_embed_dim == 32
    assert completed.encoder.swin_window == 5
    assert completed.encoder.swin_depths[:3] == (2, 2, 2)
    assert completed.encoder.swin_heads[:3] == (1, 2, 4)
    load_official(build_network(completed), state, what="swin")

    small = official_layout(tiny_network("deaot"))  # ResNet (2, 2, 2), width 16
    r50 = tiny_spec("deaot", encoder=EncoderSpec("resnet"))
    completed = complete_encoder_spec(r50, small).encoder
    assert (completed.resnet_layers, completed.resnet_width) == ((2, 2, 2), 16)
    mobile = official_layout(
        build_network(tiny_spec("deaot", encoder=EncoderSpec("mobilenetv2", width_mult=0.5)))
    )
    full = tiny_spec("deaot", encoder=EncoderSpec("mobilenetv2", width_mult=1.0))
    assert complete_encoder_spec(full, mobile).encoder.width_mult == 0.5


def test_non_tensor_entries_are_refused() -> None:
    with pytest.raises(CheckpointError, match="non-tensor"):
        official_state_dict({"weights": {}, "step": 3})


def test_builder_accepts_official_and_project_key_names(family: str) -> None:
    from vos.build import EngineWeights, PropagatorOptions, build_engine
    from vos.variants import spec_to_dict

    source = tiny_network(family, seed=2)
    official = official_layout(source)
    name = f"{family}_tiny"
    for weights in (
        EngineWeights.official(official, name, where="official.pth"),
        EngineWeights.project(source.state_dict(), spec_to_dict(tiny_spec(family)), "p.pt"),
    ):
        propagator = build_engine(family, weights, PropagatorOptions(long_term_gap=3))
        network = propagator.network  # type: ignore[attr-defined]
        for key, value in source.state_dict().items():
            assert torch.equal(network.state_dict()[key], value), key
        assert propagator.long_term_gap == 3 and not network.training  # type: ignore[attr-defined]


def test_swin_position_indices_are_checked_not_loaded() -> None:
    from dataclasses import replace

    from models.shared.video_swin import relative_position_index

    encoder = EncoderSpec(
        "swin", swin_embed_dim=8, swin_depths=(2, 2, 2, 2), swin_heads=(1, 2, 2, 4)
    )
    spec = replace(tiny_spec("aot"), encoder=encoder)
    official = official_layout(build_network(spec))
    blocks = [k[: -len("relative_position_bias_table")] for k in official if k.endswith("_table")]
    assert len(blocks) == 6  # three stages of two blocks
    for prefix in blocks:
        official[prefix + "relative_position_index"] = relative_position_index((1, 7, 7))
    report = load_official(build_network(spec), official, what="swin")
    assert sum(k.endswith("relative_position_index") for k in report.skipped) == 6
    official[blocks[3] + "relative_position_index"] = relative_position_index((1, 7, 7)).flip(0)
    with pytest.raises(CheckpointError, match=re.escape(blocks[3])):
        load_official(build_network(spec), official, what="swin")
