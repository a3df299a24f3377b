"""What a UNINEXT network is made of: typed hyper-parameters and the official variants.

The official code reads a detectron2 ``CfgNode`` everywhere; here one frozen dataclass names
every hyper-parameter the RVOS path needs, and :func:`models.uninext.model.build_uninext` turns
it into modules. The presets follow ``MasterBin-IIAU/UNINEXT@5ab0386``
``projects/UNINEXT/configs/eval-vid/video_joint_{r50,convnext_large,vit_huge}_eval_rvos.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

BackboneKind = Literal["resnet", "convnext", "vit"]


@dataclass(frozen=True)
class BackboneSpec:
    """One of the three image backbones; only the fields of ``kind`` matter.

    ResNet (detectron2 ``build_resnet_backbone``): ``depth`` 18/34 (basic blocks) or 50/101
    (bottlenecks), ``stem_channels``, ``res2_channels`` (output channels of res2; bottleneck width
    is a quarter of it), ``norm`` "FrozenBN" (official) or "GN" (trainable, for tiny models).
    ConvNeXt (UNINEXT's ``D2ConvNeXt``): ``depths``, ``dims``.
    ViT (ViTDet-style ``D2ViT``): ``embed_dim``, ``vit_depth``, ``num_heads``, ``patch_size``,
    ``window_size``, ``window_blocks``, ``pretrain_grid`` (side of the stored abs-pos grid),
    ``rel_pos_grid`` (token grid the global blocks' relative tables are sized for).
    """

    kind: BackboneKind
    in_channels: int = 3
    # resnet
    depth: int = 50
    stem_channels: int = 64
    res2_channels: int = 256
    norm: Literal["FrozenBN", "GN"] = "FrozenBN"
    # convnext
    depths: tuple[int, ...] = (3, 3, 27, 3)
    dims: tuple[int, ...] = (192, 384, 768, 1536)
    # vit
    embed_dim: int = 1280
    vit_depth: int = 32
    num_heads: int = 16
    patch_size: int = 16
    window_size: int = 14
    window_blocks: tuple[int, ...] = (0, 1, 3, 4, 6, 7, 9, 10)
    pretrain_grid: int = 14
    rel_pos_grid: int = 64

    @property
    def out_channels(self) -> tuple[int, int, int]:
        """Channels of the stride-8/16/32 outputs (res3, res4, res5)."""
        if self.kind == "resnet":
            base = self.res2_channels
            return (base * 2, base * 4, base * 8)
        if self.kind == "convnext":
            return (self.dims[1], self.dims[2], self.dims[3])
        return (self.embed_dim // 2, self.embed_dim, self.embed_dim)

    @property
    def size_divisibility(self) -> int:
        """Frames are zero-padded bottom/right to a multiple of this (0: no padding)."""
        return 0 if self.kind == "resnet" else 32


@dataclass(frozen=True)
class TextSpec:
    """The BERT text encoder (``BertModel`` without pooler; last hidden layer is used)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0


@dataclass(frozen=True)
class UninextSpec:
    """Hyper-parameters of the UNINEXT RVOS network (official values as defaults).

    Attributes:
        d_model: transformer width; ``input_proj`` GroupNorm uses 32 groups, so a multiple of 32.
        num_queries: two-stage proposals kept = decoder query slots (900).
        fusion_dim / fusion_heads / num_fusion_layers: GLIP BiAttention (before encoder layers
            ``0 .. num_fusion_layers-1``), layer-scale initialised to ``1 / enc_layers``.
        mask_channels: channels of the stride-8 mask features (``d_model // 32`` upstream).
        mask_hidden: channels of the mask head's ``lay1`` (``d_model // 4`` upstream).
        dynamic_channels: width of the dynamic (CondInst) convolutions.
        min_size / max_size: test-time ``ResizeShortestEdge``.
    """

    backbone: BackboneSpec
    text: TextSpec = field(default_factory=TextSpec)
    d_model: int = 256
    num_heads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    ffn_dim: int = 2048
    num_levels: int = 4
    enc_points: int = 4
    dec_points: int = 4
    num_queries: int = 900
    fusion_dim: int = 2048
    fusion_heads: int = 8
    num_fusion_layers: int = 1
    mask_channels: int = 8
    mask_hidden: int = 64
    dynamic_channels: int = 8
    controller_layers: int = 3
    dropout: float = 0.0
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    min_size: int = 480
    max_size: int = 1333

    def with_backbone(self, backbone: BackboneSpec) -> UninextSpec:
        return replace(self, backbone=backbone)


UNINEXT_R50 = UninextSpec(backbone=BackboneSpec(kind="resnet", depth=50))
UNINEXT_CONVNEXT_L = UninextSpec(
    backbone=BackboneSpec(kind="convnext", depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536))
)
UNINEXT_VIT_H = UninextSpec(
    backbone=BackboneSpec(kind="vit", embed_dim=1280, vit_depth=32, num_heads=16)
)

# A small network of the same architecture, trained on the synthetic benchmark (weights/). Its
# text side reads the benchmark's word-level tokenizer (pipeline/adapters/tokenize.py: 4
# specials, <pad> = 1, then the 48 words of pipeline.core.data.synthetic_vocabulary()).
UNINEXT_TINY = UninextSpec(
    backbone=BackboneSpec(kind="resnet", depth=18, stem_channels=16, res2_channels=16, norm="GN"),
    text=TextSpec(
        vocab_size=52,
        hidden_size=64,
        num_layers=1,
        num_heads=2,
        intermediate_size=128,
        max_positions=32,
        pad_token_id=1,
    ),
    d_model=64,
    num_heads=4,
    enc_layers=2,
    dec_layers=2,
    ffn_dim=128,
    num_queries=30,
    fusion_dim=128,
    fusion_heads=4,
    mask_channels=8,
    mask_hidden=16,
    dynamic_channels=8,
    min_size=144,
    max_size=256,
)


def tiny_spec(vocab_size: int, pad_token_id: int = 1) -> UninextSpec:
    """:data:`UNINEXT_TINY` for a word-level vocabulary of ``vocab_size`` tokens."""
    text = replace(UNINEXT_TINY.text, vocab_size=vocab_size, pad_token_id=pad_token_id)
    return replace(UNINEXT_TINY, text=text)


VARIANTS: dict[str, UninextSpec] = {
    "r50": UNINEXT_R50,
    "convnextl": UNINEXT_CONVNEXT_L,
    "vith": UNINEXT_VIT_H,
    "tiny": UNINEXT_TINY,
}


def variant_spec(name: str) -> UninextSpec:
    """The preset ``name`` (``r50``, ``convnextl``, ``vith``, ``tiny``)."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown UNINEXT variant {name!r}; known: {sorted(VARIANTS)}") from None
