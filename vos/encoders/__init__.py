"""Image encoders of AOT / DeAOT: each returns [stride 4, 8, 16, 16] feature maps."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from vos.encoders.mobilenetv2 import MobileNetV2Encoder
from vos.encoders.resnet import ResNetEncoder
from vos.encoders.swin import SwinEncoder
from vos.layers.basic import FrozenBatchNorm2d
from vos.variants import EncoderSpec


def build_encoder(spec: EncoderSpec, norm: Callable[[int], nn.Module] | None = None) -> nn.Module:
    """The encoder for ``spec``; its ``out_dims`` gives the four output widths.

    ``norm`` replaces the CNN encoders' frozen BatchNorm (e.g. ``nn.BatchNorm2d`` to train a
    small encoder from scratch; its state dict has the same keys plus ``num_batches_tracked``).
    """
    norm = norm or FrozenBatchNorm2d
    if spec.kind == "mobilenetv2":
        return MobileNetV2Encoder(width_mult=spec.width_mult, norm=norm)
    if spec.kind == "resnet":
        return ResNetEncoder(spec.resnet_layers, spec.resnet_width, norm=norm)
    if spec.kind == "swin":
        return SwinEncoder(
            embed_dim=spec.swin_embed_dim,
            depths=spec.swin_depths,
            num_heads=spec.swin_heads,
            window=spec.swin_window,
        )
    raise ValueError(f"unknown encoder kind {spec.kind!r}")


__all__ = ["MobileNetV2Encoder", "ResNetEncoder", "SwinEncoder", "build_encoder"]
