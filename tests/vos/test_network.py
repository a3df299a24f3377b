"""Encoders, ID bank, propagation and decoding shapes; preprocessing rules."""

from __future__ import annotations

import math

import pytest
import torch

from tests.vos.conftest import tiny_network
from vos.deaot import build_network
from vos.encoders import MobileNetV2Encoder, ResNetEncoder, SwinEncoder
from vos.layers.position import sine_position_embedding
from vos.preprocess import ResizeRule, normalize_frames, resize_labels
from vos.variants import VARIANTS, get_variant


@pytest.mark.parametrize(
    ("encoder", "dims"),
    [
        (MobileNetV2Encoder(), (24, 32, 96, 1280)),
        (MobileNetV2Encoder(width_mult=0.5), (16, 16, 48, 1280)),
        (ResNetEncoder(), (256, 512, 1024, 1024)),
        (ResNetEncoder((2, 2, 2), 16), (64, 128, 256, 256)),
        (SwinEncoder(32, (2, 2, 2, 2), (1, 2, 4, 8), window=3), (32, 64, 128, 128)),
    ],
    ids=["mobilenetv2", "mobilenetv2-0.5", "resnet50", "resnet-tiny", "swin-small-window"],
)
def test_encoder_strides_and_widths(encoder: torch.nn.Module, dims: tuple[int, ...]) -> None:
    encoder.eval()
    with torch.no_grad():
        outs = encoder(torch.randn(1, 3, 49, 81))
    assert tuple(o.shape[1] for o in outs) == dims == tuple(encoder.out_dims)
    for out, stride in zip(outs, (4, 8, 16, 16), strict=True):
        assert out.shape[-2:] == (math.ceil(49 / stride), math.ceil(81 / stride))


def test_every_variant_resolves_and_small_ones_build() -> None:
    for name in VARIANTS:
        assert get_variant(name).name == name
    assert get_variant("aot_r50_aotl").name == "r50_aotl"
    assert get_variant("deaot_t").name == "deaott"
    assert get_variant("SwinL-DeAOT-L").name == "swinl_deaotl"
    with pytest.raises(KeyError, match="unknown"):
        get_variant("aot_xxl")
    for name in ("aott", "deaott"):
        net = build_network(get_variant(name))
        n_params = sum(p.numel() for p in net.parameters())
        reported = {"aott": 5.73e6, "deaott": 7.24e6}[name]  # MODEL_ZOO parameter counts
        assert abs(n_params - reported) / reported < 0.002


@pytest.mark.parametrize(("align", "kernel"), [(True, 17), (False, 16)])
def test_id_bank_matches_token_grid(align: bool, kernel: int) -> None:
    net = tiny_network("aot", align_corners=align)
    assert net.id_bank.kernel_size == (kernel, kernel)
    size = ResizeRule().network_size(120, 200, 1.0, align)
    x = normalize_frames(torch.zeros(1, 3, 120, 200, dtype=torch.uint8), size)
    with torch.no_grad():
        enc = net.encode_image(x)
        ids = net.id_embedding(torch.zeros(1, net.max_objects + 1, *size))
    assert ids.shape[1] == enc.tokens.shape[1] == enc.size_2d[0] * enc.size_2d[1]


def test_propagate_and_decode_shapes(family: str) -> None:
    net = tiny_network(family)
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        enc = net.encode_image(x)
        one_hot = torch.zeros(2, net.max_objects + 1, 65, 97)
        one_hot[:, 0] = 1
        ref = net.propagate(enc.tokens, enc.size_2d, None, net.id_embedding(one_hot))
        memories = [((k, v), (k, v)) for k, v in zip(ref.memory.key, ref.memory.value, strict=True)]
        out = net.propagate(enc.tokens, enc.size_2d, memories)  # batch-1 query broadcast to 2
        logits = net.decode(out, enc)
    assert logits.shape == (2, net.max_objects + 1, 17, 25)
    fused = net.fuse_memory(out.memory, net.id_embedding(one_hot))
    assert len(fused) == net.spec.num_layers
    assert fused[0][0].shape[:2] == fused[0][1].shape[:2] == (2, enc.tokens.shape[1])


def test_sine_position_embedding_formula() -> None:
    pos = sine_position_embedding((3, 4), 8)[0].view(3, 4, 8)
    y = 2 / (2 + 1e-6) * 2 * math.pi  # last row, normalised
    assert math.isclose(float(pos[2, 0, 0]), math.sin(y), abs_tol=1e-6)
    assert math.isclose(float(pos[2, 0, 1]), math.cos(y), abs_tol=1e-6)
    assert math.isclose(float(pos[2, 0, 2]), math.sin(y / 100), abs_tol=1e-6)
    x = 3 / (3 + 1e-6) * 2 * math.pi
    assert math.isclose(float(pos[0, 3, 4]), math.sin(x), abs_tol=1e-6)


@pytest.mark.parametrize(
    ("hw", "scale", "align", "expected"),
    [
        ((480, 854), 1.0, True, (481, 849)),
        ((480, 854), 1.0, False, (480, 848)),
        ((720, 1280), 1.0, True, (577, 1041)),
        ((720, 1280), 0.8, False, (464, 832)),
        ((720, 1280), 1.0, False, (592, 1040)),
        ((720, 1280), 1.2, False, (704, 1248)),
        ((41, 74), 1.0, True, (33, 81)),
        ((40, 74), 1.0, False, (32, 80)),
    ],
)
def test_resize_rule(hw, scale, align, expected) -> None:
    assert ResizeRule().network_size(*hw, scale, align) == expected


def test_label_resize_is_nearest() -> None:
    labels = torch.tensor([[0, 1], [2, 3]])
    big = resize_labels(labels, (4, 4))
    assert big.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
