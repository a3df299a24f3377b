"""Cutie's network variants and inference settings as typed dataclasses.

Values from hkchengrex/Cutie@ec5cdd4 ``cutie/config/model/base.yaml`` and ``small.yaml`` (the small
model only swaps the pixel encoder) and ``cutie/config/eval_config.yaml`` (inference defaults).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

PixelBackbone = Literal["resnet18", "resnet50"]
# Channels of layer3, layer2, layer1 (f16, f8, f4) of each pixel encoder.
PIXEL_ENCODER_DIMS: dict[str, tuple[int, int, int]] = {
    "resnet18": (256, 128, 64),
    "resnet50": (1024, 512, 256),
}
MASK_ENCODER_DIM = 256  # layer3 of the mask encoder's ResNet-18 (official final_dim)
OFFICIAL_RESNET_WIDTH = 64  # stem channels of the official ResNets


def pixel_encoder_dims(backbone: str, width: int) -> tuple[int, int, int]:
    """f16, f8, f4 channels of ``backbone`` with a stem of ``width`` channels (the official
    ResNets: :data:`PIXEL_ENCODER_DIMS`)."""
    f16, f8, f4 = PIXEL_ENCODER_DIMS[backbone]
    return (
        f16 * width // OFFICIAL_RESNET_WIDTH,
        f8 * width // OFFICIAL_RESNET_WIDTH,
        f4 * width // OFFICIAL_RESNET_WIDTH,
    )


@dataclass(frozen=True)
class CutieSpec:
    """One Cutie architecture.

    Attributes:
        name: the variant name (``base`` / ``small``).
        pixel_encoder: ResNet of the pixel (query) encoder, cut after ``layer3`` (stride 16).
        ms_dims: channels of the pixel encoder's f16, f8, f4 maps.
        encoder_width, mask_encoder_width: stem channels of the pixel and the mask encoders'
            ResNets (their stages have 1, 2, 4 times as many planes); 64 in every official
            model, smaller in the project's own tiny variant.
        pixel_dim, key_dim, value_dim, sensory_dim, embed_dim: feature widths.
        num_queries: object queries (= object summaries).
        num_blocks, num_heads, ff_dim: the object transformer.
        up_dims: mask decoder widths at strides 16, 8, 4 (the first equals ``embed_dim``).
        pixel_pe_scale, pixel_pe_temperature: the sine positional encoding.
        pixel_mean, pixel_std: image normalisation (images in [0, 1]).
    """

    name: str = "base"
    pixel_encoder: PixelBackbone = "resnet50"
    ms_dims: tuple[int, int, int] = (1024, 512, 256)
    pixel_dim: int = 256
    key_dim: int = 64
    value_dim: int = 256
    sensory_dim: int = 256
    embed_dim: int = 256
    num_queries: int = 16
    num_blocks: int = 3
    num_heads: int = 8
    ff_dim: int = 2048
    up_dims: tuple[int, int, int] = (256, 128, 128)
    pixel_pe_scale: float = 32.0
    pixel_pe_temperature: float = 128.0
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    encoder_width: int = OFFICIAL_RESNET_WIDTH
    mask_encoder_width: int = OFFICIAL_RESNET_WIDTH

    def __post_init__(self) -> None:
        dims = pixel_encoder_dims(self.pixel_encoder, self.encoder_width)
        if tuple(self.ms_dims) != dims:
            raise ValueError(
                f"{self.pixel_encoder} of width {self.encoder_width} gives ms_dims {dims}, "
                f"not {self.ms_dims}"
            )
        if self.up_dims[0] != self.embed_dim:
            raise ValueError(f"up_dims[0] must equal embed_dim, got {self.up_dims}")
        if self.num_queries % 2:
            raise ValueError("num_queries must be even (half foreground, half background)")

    @property
    def mask_encoder_dim(self) -> int:
        """Channels of the mask encoder's ``layer3`` (official ``final_dim``, 256)."""
        return MASK_ENCODER_DIM * self.mask_encoder_width // OFFICIAL_RESNET_WIDTH


VARIANTS: dict[str, CutieSpec] = {
    "base": CutieSpec(name="base"),
    "small": CutieSpec(name="small", pixel_encoder="resnet18", ms_dims=(256, 128, 64)),
}
# Official checkpoint names (release v1.0) -> variant.
CHECKPOINT_VARIANTS: dict[str, str] = {
    "cutie-base-mega": "base",
    "cutie-small-mega": "small",
    "cutie-base-nomose": "base",
    "cutie-small-nomose": "small",
    "cutie-base-wmose": "base",
    "cutie-small-wmose": "small",
}


def get_cutie_variant(name: str) -> CutieSpec:
    """The spec of ``name`` (``base``, ``small`` or an official checkpoint stem)."""
    key = CHECKPOINT_VARIANTS.get(str(name).removesuffix(".pth"), str(name))
    if key not in VARIANTS:
        known = sorted([*VARIANTS, *CHECKPOINT_VARIANTS])
        raise KeyError(f"unknown Cutie variant {name!r}; known: {known}")
    return VARIANTS[key]


@dataclass(frozen=True)
class LongTermSettings:
    """XMem-style long-term memory (``eval_config.yaml`` ``long_term``; used when
    ``use_long_term``).

    Attributes:
        count_usage: count how often long-term prototypes are read (drives their removal).
        max_mem_frames: working-memory frames (the permanent one included) that trigger a
            consolidation.
        min_mem_frames: working-memory frames (the permanent one included) kept after it.
        num_prototypes: tokens a consolidation keeps (the most used) as long-term prototypes.
        max_num_tokens: long-term capacity in tokens.
        buffer_tokens: extra room freed when the long-term memory is full.
    """

    count_usage: bool = True
    max_mem_frames: int = 10
    min_mem_frames: int = 5
    num_prototypes: int = 128
    max_num_tokens: int = 10000
    buffer_tokens: int = 2000


@dataclass(frozen=True)
class CutieSettings:
    """How Cutie runs (``eval_config.yaml`` names; defaults are its d17 / y19 / MOSE settings).

    Attributes:
        mem_every: a frame joins the working memory every ``mem_every`` frames.
        max_mem_frames: working memory size in frames, the permanent first frame included
            (it is not evicted; ``max_mem_frames - 1`` FIFO frames follow it).
        top_k: similarities kept per query pixel before the softmax.
        stagger_updates: number of frames (spread over ``1 .. mem_every`` after a memory frame)
            on which the decoder updates the sensory memory.
        max_internal_size: a frame whose short side exceeds this is resized (bilinear) so that
            the short side equals it; -1 keeps the input size.
        flip_aug: also run the horizontally flipped frame and average the probabilities.
        amp: float16 autocast on CUDA (the decoder's logit and the GRU stay float32).
        use_long_term: consolidate old working memory into long-term prototypes instead of
            the FIFO (official for LVOS, BURST and the generic setting).
        long_term: the long-term memory's sizes.
    """

    mem_every: int = 5
    max_mem_frames: int = 5
    top_k: int = 30
    stagger_updates: int = 5
    max_internal_size: int = 480
    flip_aug: bool = False
    amp: bool = False
    use_long_term: bool = False
    long_term: LongTermSettings = LongTermSettings()

    def __post_init__(self) -> None:
        if self.mem_every < 1 or self.max_mem_frames < 2 or self.top_k < 1:
            raise ValueError(
                "mem_every >= 1, max_mem_frames >= 2 and top_k >= 1 are required, got "
                f"{self.mem_every}, {self.max_mem_frames}, {self.top_k}"
            )

    @property
    def stagger_steps(self) -> frozenset[int]:
        """Frame offsets after the last memory frame on which the sensory memory is updated
        (official: ``round(linspace(1, mem_every, stagger_updates))``, or all of them)."""
        if self.stagger_updates >= self.mem_every:
            return frozenset(range(1, self.mem_every + 1))
        steps = np.round(np.linspace(1, self.mem_every, self.stagger_updates)).astype(int)
        return frozenset(int(s) for s in steps)


def spec_to_dict(spec: CutieSpec) -> dict[str, object]:
    """The spec as plain data (a project weights file's engine config), with its family."""
    return {"family": "cutie", **asdict(spec)}


# --------------------------------------------------------------------------------------------
# The project's own tiny variant (trained on the synthetic benchmark: vos/cutie/train.py,
# ``lsvos train-vos --model cutie_tiny``; weights/README.md). Not an official model: no
# checkpoint of it exists upstream, so it is not in :data:`VARIANTS` (the official layout).

CUTIE_TINY = CutieSpec(
    name="tiny",
    pixel_encoder="resnet18",
    ms_dims=pixel_encoder_dims("resnet18", 16),  # (64, 32, 16)
    encoder_width=16,
    mask_encoder_width=16,  # mask encoder layer3: 64 channels
    pixel_dim=64,
    key_dim=32,
    value_dim=48,
    sensory_dim=32,
    embed_dim=64,
    num_queries=8,
    num_blocks=1,
    num_heads=2,
    ff_dim=128,
    up_dims=(64, 32, 32),
)
# ``lsvos train-vos --model`` names -> the spec trained from scratch (1.00 M parameters).
TRAINABLE_VARIANTS: dict[str, CutieSpec] = {"cutie_tiny": CUTIE_TINY}
