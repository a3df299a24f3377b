"""SgMg converter: strict key accounting, tied keys, the safe checkpoint reader."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

from models.sgmg.build import build_sgmg, tiny_config
from models.sgmg.convert import load_official, rename
from models.sgmg.parity import config_from_case
from models.shared.checkpoint import CheckpointError, KeyMismatchError, read_checkpoint
from tests.models.conftest import case_config, manifest_state, parity_case


def _official_from_port(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The official layout of a port's weights (inverse key map, tied copies, derived buffers)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        for old, new in (
            ("backbone.", "backbone.0.body."),
            ("text_encoder.model.", "text_encoder.text_backbone."),
        ):
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value.clone()
        if key.startswith("bbox_embed."):
            out["transformer.decoder." + key] = out[key]
    for name, buf in model.named_buffers():
        if name.endswith("relative_position_index"):
            out["backbone.0.body." + name[len("backbone.") :]] = buf.clone()
    out["text_encoder.text_backbone.embeddings.position_ids"] = torch.arange(48)[None]
    return out


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_sgmg(tiny_config(vocab_size=30)).eval()


def test_rename() -> None:
    assert rename("backbone.0.body.patch_embed.proj.weight") == "backbone.patch_embed.proj.weight"
    assert (
        rename("text_encoder.text_backbone.pooler.dense.bias")
        == "text_encoder.model.pooler.dense.bias"
    )
    assert (
        rename("transformer.decoder.bbox_embed.2.layers.0.weight") == "bbox_embed.2.layers.0.weight"
    )
    assert rename("controller.layers.2.weight") == "controller.layers.2.weight"


@pytest.mark.parametrize("name", ["sgmg_vswint", "sgmg_vswinb"])
def test_every_official_key_is_accounted_for(name: str) -> None:
    case = parity_case(name)
    config = case_config(case)
    state = manifest_state(case)
    model = build_sgmg(config_from_case(config))
    report = load_official(model, state)
    n_alias = 24
    assert len(report.loaded) + len(report.skipped) + n_alias == len(state)
    assert "text_encoder.text_backbone.embeddings.position_ids" in report.skipped
    depth = sum(config["variant"]["backbone"]["depths"])
    assert sum(k.endswith("relative_position_index") for k in report.skipped) == depth
    assert len(report.loaded) == len(model.state_dict())


def test_missing_unexpected_and_misshaped_keys_are_listed(tiny: torch.nn.Module) -> None:
    official = _official_from_port(tiny)
    load_official(tiny, official)  # round trip is clean
    broken = dict(official)
    del broken["controller.layers.2.bias"]
    broken["fusion_module.extra.weight"] = torch.zeros(1)
    broken["query_embed.weight"] = torch.zeros(3, 64)
    with pytest.raises(KeyMismatchError) as err:
        load_official(tiny, broken)
    assert err.value.missing == ["controller.layers.2.bias"]
    assert err.value.unexpected == ["fusion_module.extra.weight"]
    assert err.value.mismatched and "query_embed.weight" in err.value.mismatched[0]


def test_tied_box_heads_must_agree(tiny: torch.nn.Module) -> None:
    official = _official_from_port(tiny)
    official["transformer.decoder.bbox_embed.0.layers.0.weight"] = torch.randn_like(
        official["bbox_embed.0.layers.0.weight"]
    )
    with pytest.raises(CheckpointError, match="different values"):
        load_official(tiny, official)


def test_checkpoint_file_with_args_namespace_loads(tiny: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "sgmg.pth"
    args = argparse.Namespace(backbone="video_swin_t_p4w7", lr=1e-4)
    torch.save({"model": _official_from_port(tiny), "args": args, "epoch": 5}, path)
    checkpoint = read_checkpoint(path)
    assert checkpoint["args"].backbone == "video_swin_t_p4w7"
    report = load_official(tiny, checkpoint)
    assert len(report.loaded) == len(tiny.state_dict())


class _Payload:
    """An object whose unpickling would run code: writes a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_checkpoint_with_an_arbitrary_pickled_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    marker = tmp_path / "was_executed"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_checkpoint(path)
    assert not marker.exists()
