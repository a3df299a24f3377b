"""Configurations of the ReferFormer / MUTR / SOC family: released and tiny.

One :class:`FamilyConfig` describes any of the three networks; each leaf's ``build`` module
(``models.referformer.build``, ``models.mutr.build``, ``models.soc.build``) assembles its network
from the parts in :mod:`models.family.parts`. :func:`released_config` gives the official
(Video) Swin networks, :func:`tiny_config` the small ones trained on the synthetic benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from models.shared.swin import SWIN_SPECS
from models.shared.video_swin import VIDEO_SWIN_SPECS

ModelName = Literal["referformer", "mutr", "soc"]
MODEL_NAMES: tuple[str, ...] = ("referformer", "mutr", "soc")
BACKBONES: tuple[str, ...] = ("video_swin", "swin")


@dataclass(frozen=True)
class FamilyConfig:
    """Everything needed to build one of the three networks.

    Attributes (groups):
        model: ``referformer``, ``mutr`` or ``soc``.
        backbone: ``video_swin`` (every released SOC, the challenge's models) or ``swin``
            (ReferFormer's and MUTR's per-frame 2-D ``swin_*_p4w7``; window = window_size[-1]).
        embed_dim, depths, num_heads, window_size, drop_path_rate: the (Video) Swin.
        text: keyword arguments of :class:`RobertaTextEncoder` (roberta-base when empty).
        d_model ... dec_n_points: the deformable transformer and queries.
        mask_dim: mask-feature channels (256 for the cross-modal FPN; SOC: 8).
        dynamic_mask_channels, controller_layers: the CondInst head.
        fpn_dim_feedforward, fpn_norm_groups: the cross-modal FPN (ReferFormer, MUTR).
        input_proj_groups: GroupNorm groups of the input projections.
        mta_layers, mta_dim_feedforward: MUTR's MTA.
        video_window, video_enc_layers, video_dec_layers, video_dim_feedforward, video_dropout:
            the VITA video decoder (MUTR's MTI: window 4; SOC's VOC: window 0).
        spatial_norm_groups: GroupNorm groups of SOC's spatial decoder.
    """

    model: str = "referformer"
    backbone: str = "video_swin"
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int, int] = (8, 7, 7)
    drop_path_rate: float = 0.2
    text: dict[str, Any] = field(default_factory=dict)
    d_model: int = 256
    nheads: int = 8
    num_queries: int = 5
    enc_layers: int = 4
    dec_layers: int = 4
    dim_feedforward: int = 2048
    dropout: float = 0.1
    enc_n_points: int = 4
    dec_n_points: int = 4
    mask_dim: int = 256
    dynamic_mask_channels: int = 8
    controller_layers: int = 3
    fpn_dim_feedforward: int = 2048
    fpn_norm_groups: int = 8
    input_proj_groups: int = 32
    mta_layers: int = 1
    mta_dim_feedforward: int = 2048
    video_window: int = 4
    video_enc_layers: int = 3
    video_dec_layers: int = 3
    video_dim_feedforward: int = 2048
    video_dropout: float = 0.2
    spatial_norm_groups: int = 8

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; known: {MODEL_NAMES}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; known: {BACKBONES}")


def released_config(model: str, backbone: str = "base", kind: str = "video_swin") -> FamilyConfig:
    """The official network of ``model`` with the ``backbone`` size of a (Video) Swin.

    ``kind="video_swin"``: tiny / small / base; ``kind="swin"`` (ReferFormer, MUTR): tiny /
    small / base / large, window 7, stochastic depth 0.3 for base and large.
    """
    spec = (VIDEO_SWIN_SPECS if kind == "video_swin" else SWIN_SPECS)[backbone]
    common: dict[str, Any] = {
        "model": model,
        "backbone": kind,
        "embed_dim": spec.embed_dim,
        "depths": spec.depths,
        "num_heads": spec.num_heads,
    }
    if kind == "swin":
        common["drop_path_rate"] = 0.3 if backbone in ("base", "large") else 0.2
    if model == "soc":
        common.update(
            num_queries=20,
            enc_layers=3,
            dec_layers=3,
            mask_dim=8,
            video_window=0,
            video_dropout=0.1,
        )
    return FamilyConfig(**common)


def tiny_config(model: str, vocab_size: int) -> FamilyConfig:
    """The small network of ``model`` trained on the synthetic benchmark (weights/README.md).

    A 4-stage Video Swin of 16 channels, a 2-layer RoBERTa of width 64 trained from scratch
    over the benchmark's word vocabulary, a 64-wide transformer with 2 + 2 layers; the family
    traits stay: ReferFormer's cross-modal FPN and sentence query, MUTR's additive fusion, MTA
    and windowed MTI, SOC's zero query, 10 queries, VOC from the sentence and FPN spatial decoder.
    """
    text = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "num_layers": 2,
        "num_heads": 4,
        "intermediate_size": 128,
        "max_position_embeddings": 64,
        "dropout": 0.0,
        "frozen": False,
    }
    values: dict[str, Any] = {
        "model": model,
        "embed_dim": 16,
        "depths": (1, 1, 2, 1),
        "num_heads": (1, 2, 2, 4),
        "drop_path_rate": 0.0,
        "text": text,
        "d_model": 64,
        "nheads": 4,
        "num_queries": 5,
        "enc_layers": 2,
        "dec_layers": 2,
        "dim_feedforward": 128,
        "dropout": 0.0,
        "mask_dim": 32,
        "fpn_dim_feedforward": 128,
        "input_proj_groups": 16,
        "mta_dim_feedforward": 128,
        "video_enc_layers": 2,
        "video_dec_layers": 2,
        "video_dim_feedforward": 128,
        "video_dropout": 0.0,
    }
    if model == "soc":
        values.update(num_queries=10, mask_dim=8, video_window=0, spatial_norm_groups=4)
    return FamilyConfig(**values)
