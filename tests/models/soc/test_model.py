"""SOC specifics: the two-way fusion's text feature and the challenge copy's key naming."""

from __future__ import annotations

import torch

from models.family.convert import load_official
from models.shared.checkpoint import CheckpointError
from models.soc.convert import SOC_LAYOUT
from tests.models.family_helpers import build_family, tiny_family_config


def _official_like(net: torch.nn.Module, video_prefix: str) -> dict[str, torch.Tensor]:
    """The tiny port's weights under SOC's official names (the converter's inverse)."""
    inverse = {
        "backbone.": "backbone.0.body.",
        "text_encoder.model.": "text_encoder.",
        "text_proj.": "txt_proj.",
        "fusion.": "vlf.",
        "text_from_video.": "lvf.",
        "mask_decoder.": "spatial_decoder.",
        "video_decoder.": video_prefix,
    }
    out = {}
    for key, value in net.state_dict().items():
        for port, official in inverse.items():
            if key.startswith(port):
                key = official + key[len(port) :]
                break
        out[key] = value.clone()
    return out


def test_voc_and_vita_names_both_load() -> None:
    torch.manual_seed(0)
    source = build_family(tiny_family_config("soc"))
    for prefix in ("voc.", "vita."):
        target = build_family(tiny_family_config("soc"))
        report = load_official(
            target, {"model_state_dict": _official_like(source, prefix)}, SOC_LAYOUT
        )
        assert any(k.startswith("video_decoder.") for k in report.loaded)
        for key, value in source.state_dict().items():
            torch.testing.assert_close(target.state_dict()[key], value)


def test_missing_video_decoder_is_an_error() -> None:
    source = build_family(tiny_family_config("soc"))
    state = {k: v for k, v in _official_like(source, "voc.").items() if not k.startswith("voc.")}
    try:
        load_official(
            build_family(tiny_family_config("soc")), {"model_state_dict": state}, SOC_LAYOUT
        )
    except CheckpointError as err:
        assert "64 missing" in str(err) and "video_decoder." in str(err)
    else:
        raise AssertionError("a checkpoint without VOC must not load")


def test_text_feature_ignores_padding() -> None:
    torch.manual_seed(0)
    net = build_family(tiny_family_config("soc")).eval()
    frames = torch.randn(1, 2, 3, 40, 56)
    ids = torch.tensor([[0, 5, 6, 2]])
    padded = torch.tensor([[0, 5, 6, 2, 1, 1]])
    with torch.no_grad():
        video = net.encode_video(frames)
        a = net.text_feature(video, net.encode_text(ids, torch.ones_like(ids)))
        b = net.text_feature(video, net.encode_text(padded, (padded != 1).long()))
    assert a.shape == (1, 32)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_voc_and_vita_disagreeing_is_an_error() -> None:
    torch.manual_seed(0)
    source = build_family(tiny_family_config("soc"))
    state = _official_like(source, "voc.")
    for key, value in list(state.items()):
        if key.startswith("voc."):
            state["vita." + key[4:]] = value + 1.0
    try:
        load_official(
            build_family(tiny_family_config("soc")), {"model_state_dict": state}, SOC_LAYOUT
        )
    except CheckpointError as err:
        assert "different values" in str(err)
    else:
        raise AssertionError("conflicting voc.* / vita.* tensors must not load")
