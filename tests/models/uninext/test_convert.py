"""UNINEXT converter: every manifest key of the three official layouts is mapped or skipped."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from models.shared.checkpoint import CheckpointError, KeyMismatchError
from models.uninext.convert import POSITION_IDS, convert_official, load_official_weights
from models.uninext.model import build_uninext
from models.uninext.parity import spec_from_config
from models.uninext.spec import UNINEXT_CONVNEXT_L, UNINEXT_R50, UNINEXT_VIT_H
from tests.models.conftest import _recipe, case_config, parity_case

CASES = ["uninext_r50", "uninext_convnextl", "uninext_vith"]
PRESETS = {
    "uninext_r50": UNINEXT_R50,
    "uninext_convnextl": UNINEXT_CONVNEXT_L,
    "uninext_vith": UNINEXT_VIT_H,
}


def meta_state(case: Path) -> dict[str, torch.Tensor]:
    """The case's checkpoint layout as meta tensors (aliases share), integer buffers real."""
    recipe = _recipe(case)
    out: dict[str, torch.Tensor] = {}
    for name, dtype, shape, alias in recipe.read_manifest(case):
        if alias:
            out[name] = out[alias]
        elif name == POSITION_IDS:
            out[name] = torch.arange(shape[-1])[None]
        else:
            out[name] = torch.empty(shape, dtype=recipe._DTYPES[dtype], device="meta")
    return out


def _meta_model(case: Path):
    with torch.device("meta"):
        return build_uninext(spec_from_config(case_config(case)))


def _load(model, state):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter.*")
        return load_official_weights(model, state)


@pytest.mark.parametrize("name", CASES)
def test_manifest_keys_all_accounted_for(name: str) -> None:
    case = parity_case(name)
    state = meta_state(case)
    report = _load(_meta_model(case), state)
    rows = _recipe(case).read_manifest(case)
    aliases = sum(1 for *_, alias in rows if alias)
    assert len(report.loaded) + len(report.skipped) == len(rows) - aliases
    kept_prefixes = {k.split(".")[0] for k in report.loaded}
    assert kept_prefixes == {
        "backbone",
        "input_proj",
        "text_encoder",
        "transformer",
        "class_embed",
        "proposal_class",
        "bbox_embed",
        "iou_head",
        "controller",
        "mask_head",
    }
    skipped_roots = {".".join(k.split(".")[:3]) for k in report.skipped}
    assert "detr.detr.ref_backbone" in skipped_roots
    assert all(reason for reason in report.skipped.values())
    assert not any(k.startswith("detr.detr.backbone.") for k in report.skipped)


@pytest.mark.parametrize("name", CASES)
def test_case_config_gives_the_preset(name: str) -> None:
    assert spec_from_config(case_config(parity_case(name))) == PRESETS[name]


def test_missing_and_misshaped_keys_are_listed() -> None:
    case = parity_case("uninext_r50")
    state = meta_state(case)
    del state["detr.mask_head.lay1.weight"]
    key = "detr.detr.transformer.tgt_embed.weight"
    state[key] = torch.empty(300, 256, device="meta")
    with pytest.raises(KeyMismatchError) as err:
        _load(_meta_model(case), state)
    assert err.value.missing == ["mask_head.lay1.weight"]
    assert any("transformer.tgt_embed.weight" in m for m in err.value.mismatched)


def test_unknown_keys_fail_rather_than_vanish() -> None:
    case = parity_case("uninext_r50")
    state = meta_state(case)
    state["detr.detr.some_new_head.weight"] = torch.empty(3, device="meta")
    with pytest.raises(KeyMismatchError) as err:
        _load(_meta_model(case), state)
    assert err.value.unexpected == ["some_new_head.weight"]


def test_tied_copies_must_agree() -> None:
    official = {
        "detr.detr.transformer.decoder.bbox_embed.0.layers.0.weight": torch.zeros(2, 2),
        "detr.detr.bbox_embed.0.layers.0.weight": torch.ones(2, 2),
    }
    with pytest.raises(CheckpointError, match="both map to"):
        convert_official(official, dec_layers=6)


def test_position_ids_must_be_arange() -> None:
    with pytest.raises(CheckpointError, match="position_ids"):
        convert_official({POSITION_IDS: torch.arange(512).flip(0)[None]}, dec_layers=6)


def test_convnext_embedding_held_tensors_become_vectors() -> None:
    official = {
        "detr.detr.backbone.0.backbone.norm1.weight.weight": torch.full((1, 4), 2.0),
        "detr.detr.backbone.0.backbone.stages.0.0.gamma.weight": torch.full((1, 4), 3.0),
        "detr.detr.backbone.0.backbone.stages.0.0.pwconv1.weight": torch.zeros(16, 4),
    }
    state, _ = convert_official(official, dec_layers=6)
    assert state["backbone.norm1.weight"].shape == (4,)
    assert state["backbone.stages.0.0.gamma"].shape == (4,)
    assert state["backbone.stages.0.0.pwconv1.weight"].shape == (16, 4)


def test_encoder_classifier_index_follows_the_decoder_depth() -> None:
    official = {"detr.detr.class_embed.2.body.weight": torch.zeros(1, 8)}
    state, _ = convert_official(official, dec_layers=2)
    assert list(state) == ["proposal_class.weight"]
