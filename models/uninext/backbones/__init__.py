"""UNINEXT's three image backbones, each returning [res3, res4, res5] at strides 8/16/32."""

from __future__ import annotations

from torch import nn

from models.uninext.backbones.convnext import ConvNeXt
from models.uninext.backbones.resnet import ResNet
from models.uninext.backbones.vit import ViT
from models.uninext.spec import BackboneSpec

__all__ = ["ConvNeXt", "ResNet", "ViT", "build_backbone"]


def build_backbone(spec: BackboneSpec) -> nn.Module:
    """The backbone ``spec`` names; it has ``out_channels`` and ``size_divisibility``."""
    if spec.kind == "resnet":
        return ResNet(spec)
    if spec.kind == "convnext":
        return ConvNeXt(spec)
    if spec.kind == "vit":
        return ViT(spec)
    raise ValueError(f"unknown backbone kind {spec.kind!r}")
