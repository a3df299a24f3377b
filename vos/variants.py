"""Architecture hyper-parameters of every AOT / DeAOT variant, as typed specs.

Official values: aot-benchmark ``configs/models/*.py`` (AOT-T/S/B/L, R50-AOT-L, SwinB-AOT-L,
DeAOT-T/S/B/L, R50-DeAOT-L, SwinB-DeAOT-L) and the ICCV-2023 RVOS challenge's
``soc_test/AOT/configs/models/swinl_aotl.py`` (Swin-L AOT-L, window 12). No configuration of
the challenge's DeAOT Swin-L was released; ``swinl_deaotl`` is built by analogy (DeAOT-L with the
challenge's Swin-L encoder). The ``*_tiny`` specs are this project's small engines, trained on
the synthetic benchmark (weights/README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from models.shared.typed import from_dict

EncoderKind = Literal["mobilenetv2", "resnet", "swin"]
Family = Literal["aot", "deaot"]


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder, and its size.

    Attributes:
        kind: ``mobilenetv2`` (stride 16, dilated), ``resnet`` (bottlenecks to layer3) or
            ``swin`` (three stages).
        width_mult: MobileNetV2 width multiplier (1.0 official).
        resnet_layers / resnet_width: bottlenecks per stage and stem width (ResNet-50:
            (3, 4, 6) and 64).
        swin_embed_dim / swin_depths / swin_heads / swin_window: Swin size; only the first
            three depths / heads are built.
    """

    kind: EncoderKind
    width_mult: float = 1.0
    resnet_layers: tuple[int, int, int] = (3, 4, 6)
    resnet_width: int = 64
    swin_embed_dim: int = 128
    swin_depths: tuple[int, ...] = (2, 2, 18, 2)
    swin_heads: tuple[int, ...] = (4, 8, 16, 32)
    swin_window: int = 7

    @property
    def is_swin(self) -> bool:
        return self.kind == "swin"


MOBILENETV2 = EncoderSpec("mobilenetv2")
RESNET50 = EncoderSpec("resnet")
TINY_RESNET = EncoderSpec("resnet", resnet_layers=(2, 2, 2), resnet_width=16)
SWIN_B = EncoderSpec("swin", swin_embed_dim=128, swin_heads=(4, 8, 16, 32), swin_window=7)
SWIN_L_CHALLENGE = EncoderSpec(
    "swin", swin_embed_dim=192, swin_heads=(6, 12, 24, 48), swin_window=12
)


@dataclass(frozen=True)
class EngineSpec:
    """One AOT / DeAOT configuration.

    Attributes:
        name: variant name (``aotl``, ``r50_deaotl``, ``swinl_aotl``, ...).
        family: ``aot`` (LSTT blocks) or ``deaot`` (dual-branch gated propagation).
        encoder: the image encoder.
        num_layers: propagation layers (``MODEL_LSTT_NUM``).
        d_model: embedding width (``MODEL_ENCODER_EMBEDDING_DIM``).
        self_heads / att_heads: heads of self- and long/short-term attention.
        dim_feedforward: AOT feed-forward width (unused by DeAOT).
        max_objects: identities per engine (``MODEL_MAX_OBJ_NUM``); the ID bank has this + 1
            channels (background included).
        align_corners: True for CNN encoders (16k+1 sizes, ID bank kernel 17 / padding 8),
            False for Swin (16k sizes, kernel 16).
        decoder_intermediate: decode from every layer's output (AOT) or the last only (DeAOT).
        long_term_gap: the official test-time long-term memory gap (9999 = reference only).
        train_long_term_gap: the gap used in training.
        max_dis: short-term window radius (7 -> 15 x 15).
        droppath: stochastic depth used in training.
    """

    name: str
    family: Family
    encoder: EncoderSpec
    num_layers: int = 3
    d_model: int = 256
    self_heads: int = 8
    att_heads: int = 8
    dim_feedforward: int = 1024
    max_objects: int = 10
    align_corners: bool = True
    decoder_intermediate: bool = True
    long_term_gap: int = 5
    train_long_term_gap: int = 2
    max_dis: int = 7
    droppath: float = 0.1
    notes: str = field(default="", compare=False)

    @property
    def stride(self) -> int:
        return 16


def _aot(name: str, encoder: EncoderSpec, layers: int, gap: int, **kw: object) -> EngineSpec:
    swin = encoder.is_swin
    return EngineSpec(
        name,
        "aot",
        encoder,
        num_layers=layers,
        long_term_gap=gap,
        align_corners=not swin,
        decoder_intermediate=True,
        **kw,  # type: ignore[arg-type]
    )


def _deaot(name: str, encoder: EncoderSpec, layers: int, gap: int, **kw: object) -> EngineSpec:
    swin = encoder.is_swin
    return EngineSpec(
        name,
        "deaot",
        encoder,
        num_layers=layers,
        long_term_gap=gap,
        self_heads=1,
        att_heads=1,
        align_corners=not swin,
        decoder_intermediate=False,
        **kw,  # type: ignore[arg-type]
    )


VARIANTS: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        _aot("aott", MOBILENETV2, 1, 9999),
        _aot("aots", MOBILENETV2, 2, 9999),
        _aot("aotb", MOBILENETV2, 3, 9999),
        _aot("aotl", MOBILENETV2, 3, 5),
        _aot("r50_aotl", RESNET50, 3, 5),
        _aot("swinb_aotl", SWIN_B, 3, 5),
        _aot(
            "swinl_aotl",
            SWIN_L_CHALLENGE,
            3,
            5,
            notes="ICCV-2023 RVOS challenge (soc_test/AOT), Swin-L window 12",
        ),
        _deaot("deaott", MOBILENETV2, 1, 9999),
        _deaot("deaots", MOBILENETV2, 2, 9999),
        _deaot("deaotb", MOBILENETV2, 3, 9999),
        _deaot("deaotl", MOBILENETV2, 3, 5),
        _deaot("r50_deaotl", RESNET50, 3, 5),
        _deaot("swinb_deaotl", SWIN_B, 3, 5),
        _deaot(
            "swinl_deaotl",
            SWIN_L_CHALLENGE,
            3,
            5,
            notes="by analogy: no official config; challenge checkpoint unverified",
        ),
        # The project's tiny engines (trained on the synthetic benchmark).
        _aot(
            "aot_tiny",
            TINY_RESNET,
            1,
            5,
            d_model=64,
            self_heads=2,
            att_heads=2,
            dim_feedforward=128,
            max_objects=3,
        ),
        _deaot("deaot_tiny", TINY_RESNET, 1, 5, d_model=64, max_objects=3),
    )
}

# Names used elsewhere (model zoo file names, parity variant ids) for the same configurations.
ALIASES = {
    "aot_t": "aott",
    "aot_s": "aots",
    "aot_b": "aotb",
    "aot_l": "aotl",
    "deaot_t": "deaott",
    "deaot_s": "deaots",
    "deaot_b": "deaotb",
    "deaot_l": "deaotl",
    "r50_aot_l": "r50_aotl",
    "r50_deaot_l": "r50_deaotl",
    "swinb_aot_l": "swinb_aotl",
    "swinb_deaot_l": "swinb_deaotl",
    "swinl_aot_l": "swinl_aotl",
    "swinl_deaot_l": "swinl_deaotl",
}


def get_variant(name: str) -> EngineSpec:
    """The spec of variant ``name`` (official config names, model names or parity ids)."""
    key = name.lower().replace("-", "_")
    for prefix in ("aot_", "deaot_"):
        stripped = key[len(prefix) :] if key.startswith(prefix) else None
        if stripped and (stripped in VARIANTS) and VARIANTS[stripped].family == prefix[:-1]:
            key = stripped
    key = ALIASES.get(key, key)
    if key not in VARIANTS:
        raise KeyError(f"unknown AOT/DeAOT variant {name!r}; known: {sorted(VARIANTS)}")
    return VARIANTS[key]


def spec_from_official_config(hp: dict[str, object], name: str = "custom") -> EngineSpec:
    """A spec from official ``MODEL_*`` hyper-parameters (as in a parity case's config.json).

    The Swin encoder's size is not in ``MODEL_*``; it is completed from the state dict by
    :func:`vos.convert.complete_encoder_spec`.
    """
    encoder_name = str(hp["MODEL_ENCODER"])
    if encoder_name == "mobilenetv2":
        encoder = MOBILENETV2
    elif encoder_name == "resnet50":
        encoder = RESNET50
    elif encoder_name == "swin_base":
        encoder = SWIN_B
    elif encoder_name == "swin_large":
        encoder = SWIN_L_CHALLENGE
    else:
        raise KeyError(f"unsupported official encoder {encoder_name!r}")
    family = str(hp.get("MODEL_VOS", "aot"))
    if family not in ("aot", "deaot"):
        raise KeyError(f"unsupported MODEL_VOS {family!r}")
    gap = hp.get("TEST_LONG_TERM_MEM_GAP_official_default", hp.get("TEST_LONG_TERM_MEM_GAP", 5))
    return EngineSpec(
        name=name,
        family=family,  # type: ignore[arg-type]
        encoder=encoder,
        num_layers=int(hp["MODEL_LSTT_NUM"]),  # type: ignore[arg-type]
        d_model=int(hp.get("MODEL_ENCODER_EMBEDDING_DIM", 256)),  # type: ignore[arg-type]
        self_heads=int(hp["MODEL_SELF_HEADS"]),  # type: ignore[arg-type]
        att_heads=int(hp["MODEL_ATT_HEADS"]),  # type: ignore[arg-type]
        max_objects=int(hp.get("MODEL_MAX_OBJ_NUM", 10)),  # type: ignore[arg-type]
        align_corners=bool(hp["MODEL_ALIGN_CORNERS"]),
        decoder_intermediate=bool(hp["MODEL_DECODER_INTERMEDIATE_LSTT"]),
        long_term_gap=int(gap),  # type: ignore[arg-type]
    )


def spec_to_dict(spec: EngineSpec) -> dict[str, object]:
    """A JSON-able form of ``spec`` (stored in the project's weights files)."""
    return asdict(spec)


def spec_from_dict(data: Mapping[str, object]) -> EngineSpec:
    """Inverse of :func:`spec_to_dict` (strict: an unknown field is an error naming it)."""
    return from_dict(EngineSpec, data, where="engine spec")
