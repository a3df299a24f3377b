"""Family converter: official ReferFormer names (2-D Swin backbone too), strict failures."""

from __future__ import annotations

import pytest
import torch

from models.family.convert import load_official
from models.referformer.convert import REFERFORMER_LAYOUT
from models.shared.checkpoint import CheckpointError
from models.shared.video_swin import relative_position_index
from tests.models.family_helpers import build_family, tiny_family_config

_INVERSE = {
    "backbone.": "backbone.0.body.",
    "text_encoder.model.": "text_encoder.",
    "text_proj.": "resizer.",
    "fusion.": "fusion_module.",
    "mask_decoder.": "pixel_decoder.",
}


def _official(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in net.state_dict().items():
        for port, official in _INVERSE.items():
            if key.startswith(port):
                key = official + key[len(port) :]
                break
        out[key] = value.clone()
        if key.startswith("bbox_embed."):
            out["transformer.decoder." + key] = out[key]  # the official tied copy
    for name, _ in net.backbone.named_modules():
        if name.endswith(".attn"):  # the official checkpoints store the index
            out[f"backbone.0.body.{name}.relative_position_index"] = relative_position_index(
                (1, 7, 7)
            )
    out["text_encoder.embeddings.position_ids"] = torch.arange(40)[None]
    return out


def test_two_d_swin_referformer_loads_every_key() -> None:
    torch.manual_seed(0)
    config = tiny_family_config("referformer", backbone="swin", window_size=(1, 7, 7))
    source, target = build_family(config), build_family(config)
    official = _official(source)
    report = load_official(
        target, {"model": official, "epoch": torch.tensor(3)}, REFERFORMER_LAYOUT
    )
    assert sorted(report.loaded) == sorted(target.state_dict())
    skipped = {k for k in official if k.endswith(("relative_position_index", "position_ids"))}
    assert set(report.skipped) == skipped
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def test_wrong_index_and_unexpected_keys_fail() -> None:
    config = tiny_family_config("referformer", backbone="swin", window_size=(1, 7, 7))
    official = _official(build_family(config))
    bad = dict(official)
    key = next(k for k in bad if k.endswith("relative_position_index"))
    bad[key] = bad[key].flip(0)
    with pytest.raises(ValueError, match="relative_position_index"):
        load_official(build_family(config), {"model": bad}, REFERFORMER_LAYOUT)
    extra = {**official, "pixel_decoder.extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="unexpected"):
        load_official(build_family(config), {"model": extra}, REFERFORMER_LAYOUT)
