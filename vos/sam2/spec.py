"""SAM 2 / SAM 2.1 architecture and inference settings as typed specs.

Values are those of facebookresearch/sam2@2b90b9f ``sam2/configs/sam2{,.1}/sam2{,.1}_hiera_*.yaml``
(the Hiera constructor's defaults where a yaml omits a value). The ``sam2/`` and ``sam2.1/``
configs differ in exactly three flags, identical for every size (``Sam2Spec.version``):
``no_obj_embed_spatial``, ``add_tpos_enc_to_obj_ptrs`` and ``proj_tpos_enc_in_obj_ptrs`` +
``use_signed_tpos_enc_to_obj_ptrs``. Everything every config shares (memory attention of 4 RoPE
layers, 7 memory slots, the SAM heads, the object-score MLP, ...) is fixed in the modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from models.shared.typed import from_dict

Version = Literal["2.0", "2.1"]


@dataclass(frozen=True)
class HieraSpec:
    """The Hiera trunk (``backbones/hieradet.py``) and the FPN neck's input channels.

    Attributes:
        embed_dim / num_heads: stage-1 width and heads (both doubled at each stage change).
        stages: blocks per stage.
        global_att_blocks: block indices with global attention (window 0).
        window_spec: window size per stage (the first block of a stage uses the previous one).
        window_pos_embed_bkg: the background position embedding's spatial size.
    """

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (2, 3, 16, 3)
    global_att_blocks: tuple[int, ...] = (12, 16, 20)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg: tuple[int, int] = (14, 14)

    @property
    def channels(self) -> tuple[int, ...]:
        """Per stage output width, stride 4 first."""
        return tuple(self.embed_dim * 2**i for i in range(len(self.stages)))


@dataclass(frozen=True)
class Sam2Spec:
    """One SAM 2.x model.

    Attributes:
        name: the variant id (``sam2.1_hiera_tiny``, ...).
        version: ``"2.0"`` or ``"2.1"`` (the three config flags and two extra parameters).
        trunk: the Hiera size.
        image_size: square network input (1024 in every official config).
    """

    name: str
    version: Version
    trunk: HieraSpec
    image_size: int = 1024

    @property
    def no_obj_embed_spatial(self) -> bool:
        return self.version == "2.1"

    @property
    def add_tpos_enc_to_obj_ptrs(self) -> bool:
        return self.version == "2.1"

    @property
    def proj_tpos_enc_in_obj_ptrs(self) -> bool:
        return self.version == "2.1"

    @property
    def use_signed_tpos_enc_to_obj_ptrs(self) -> bool:
        return self.version == "2.1"

    @property
    def feat_size(self) -> int:
        """Side of the stride-16 feature map."""
        return self.image_size // 16


@dataclass(frozen=True)
class Sam2Options:
    """How the video predictor runs (``build_sam2_video_predictor`` arguments).

    Attributes:
        binarize_prompt_memory: ``binarize_mask_from_pts_for_mem_enc`` - the prompted frame's
            mask is binarised before memory encoding (on with the builder's default
            ``apply_postprocessing=True``; off in ``tools/vos_inference.py``).
        fill_hole_area: background holes of at most this many low-resolution pixels become
            foreground (``fill_hole_area``: 8 with ``apply_postprocessing``, 0 in
            ``tools/vos_inference.py``; upstream skips it where ``sam2._C`` is missing, e.g. on
            CPU); 0 turns it off.
        non_overlap_masks: per pixel only a track's highest-scoring object keeps its logit,
            the others are clamped to <= -10 (``non_overlap_masks``, set by
            ``tools/vos_inference.py``); applied to the outputs at frame size, never to memory.
        memory_stride: ``memory_temporal_stride_for_eval`` (1 in every config).
        max_cond_frames: ``max_cond_frames_in_attn`` (-1: all conditioning frames).
        bf16_memory: store memory features in bfloat16 as the official predictor does.
        num_frames: the video length the official predictor knows (it caps the pointer count
            and scales the pointers' temporal encoding); None: a long video (>= 16 frames).
    """

    binarize_prompt_memory: bool = True
    fill_hole_area: int = 8
    non_overlap_masks: bool = False
    memory_stride: int = 1
    max_cond_frames: int = -1
    bf16_memory: bool = True
    num_frames: int | None = None


TINY = HieraSpec(96, 1, (1, 2, 7, 2), (5, 7, 9), (8, 4, 14, 7), (7, 7))
SMALL = HieraSpec(96, 1, (1, 2, 11, 2), (7, 10, 13), (8, 4, 14, 7), (7, 7))
BASE_PLUS = HieraSpec(112, 2, (2, 3, 16, 3), (12, 16, 20), (8, 4, 14, 7), (14, 14))
LARGE = HieraSpec(144, 2, (2, 6, 36, 4), (23, 33, 43), (8, 4, 16, 8), (7, 7))

_SIZES = {"tiny": TINY, "small": SMALL, "base_plus": BASE_PLUS, "large": LARGE}

VARIANTS: dict[str, Sam2Spec] = {
    f"{prefix}_hiera_{size}": Sam2Spec(f"{prefix}_hiera_{size}", version, trunk)
    for prefix, version in (("sam2", "2.0"), ("sam2.1", "2.1"))
    for size, trunk in _SIZES.items()
}


def get_sam2_variant(name: str, image_size: int | None = None) -> Sam2Spec:
    """The spec of an official variant (``sam2.1_hiera_tiny`` ...), optionally at another
    image size (the official ``++model.image_size=`` override)."""
    if name not in VARIANTS:
        raise KeyError(f"unknown SAM 2 variant {name!r}; known: {sorted(VARIANTS)}")
    spec = VARIANTS[name]
    return spec if image_size is None else replace(spec, image_size=int(image_size))


def spec_to_dict(spec: Sam2Spec) -> dict[str, Any]:
    """A plain mapping (for project weight files); :func:`spec_from_dict` inverts it."""
    return asdict(spec)


def spec_from_dict(data: Mapping[str, Any], where: str = "sam2 spec") -> Sam2Spec:
    return from_dict(Sam2Spec, data, where=where)
