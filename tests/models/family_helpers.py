"""Small helpers shared by the ReferFormer / MUTR / SOC tests."""

from __future__ import annotations

from pathlib import Path

from models.family.config import FamilyConfig
from models.family.model import ReferFormer
from models.mutr.build import build_mutr
from models.referformer.build import build_referformer
from models.soc.build import build_soc

BUILDERS = {"referformer": build_referformer, "mutr": build_mutr, "soc": build_soc}


def manifest_shapes(case: Path, prefix: str) -> dict[str, tuple[int, ...]]:
    """Official key -> shape for the manifest rows under ``prefix`` (prefix removed)."""
    out: dict[str, tuple[int, ...]] = {}
    for line in (case / "manifest.tsv").read_text().splitlines()[1:]:
        name, _dtype, shape, *_ = line.split("\t")
        if name.startswith(prefix):
            out[name[len(prefix) :]] = tuple(int(d) for d in shape.split("x")) if shape else ()
    return out


def build_family(config: FamilyConfig) -> ReferFormer:
    """The network of ``config.model`` from its leaf's builder (random weights)."""
    return BUILDERS[config.model](config)


def tiny_family_config(model: str, **overrides: object) -> FamilyConfig:
    """A few-thousand-parameter network of ``model`` for fast CPU tests (random weights)."""
    values: dict[str, object] = {
        "model": model,
        "embed_dim": 8,
        "depths": (1, 1, 1, 1),
        "num_heads": (1, 1, 2, 2),
        "drop_path_rate": 0.0,
        "text": {
            "vocab_size": 60,
            "hidden_size": 16,
            "num_layers": 1,
            "num_heads": 2,
            "intermediate_size": 32,
            "max_position_embeddings": 40,
            "frozen": False,
        },
        "d_model": 32,
        "nheads": 4,
        "num_queries": 3,
        "enc_layers": 2,
        "dec_layers": 2,
        "dim_feedforward": 64,
        "dropout": 0.0,
        "enc_n_points": 2,
        "dec_n_points": 2,
        "mask_dim": 16 if model != "soc" else 8,
        "dynamic_mask_channels": 4,
        "fpn_dim_feedforward": 64,
        "fpn_norm_groups": 4,
        "input_proj_groups": 8,
        "mta_dim_feedforward": 64,
        "video_window": 0 if model == "soc" else 2,
        "video_enc_layers": 2,
        "video_dec_layers": 2,
        "video_dim_feedforward": 64,
        "video_dropout": 0.0,
        "spatial_norm_groups": 2,
    }
    values.update(overrides)
    return FamilyConfig(**values)  # type: ignore[arg-type]
