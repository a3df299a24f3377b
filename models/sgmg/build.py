"""SgMg configurations (released Video-Swin-T / -B, tiny synthetic-benchmark models), builder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from models.common.text_encoder import RobertaTextEncoder
from models.shared.video_swin import VIDEO_SWIN_SPECS, VideoSwinBackbone


@dataclass(frozen=True)
class TextConfig:
    """RobertaConfig fields (roberta-base by default)."""

    vocab_size: int = 50265
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    dropout: float = 0.1
    frozen: bool = True
    sentence_pooling: str = "pooler"


@dataclass(frozen=True)
class SgMgConfig:
    """Everything needed to build an SgMg network.

    ``multi_object`` selects Fast SgMg (:class:`models.sgmg.multi.MultiObjectSgMg`).
    """

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int, int] = (8, 7, 7)
    drop_path_rate: float = 0.2
    text: TextConfig = field(default_factory=TextConfig)
    hidden_dim: int = 256
    num_queries: int = 5
    nheads: int = 8
    enc_layers: int = 4
    dec_layers: int = 4
    dim_feedforward: int = 2048
    dropout: float = 0.1
    enc_n_points: int = 4
    dec_n_points: int = 4
    dynamic_mask_channels: int = 16
    controller_layers: int = 2
    scf_sigma: float = 7.0
    norm_groups: int = 32
    multi_object: bool = False


def _released(size: str) -> SgMgConfig:
    spec = VIDEO_SWIN_SPECS[size]
    return SgMgConfig(embed_dim=spec.embed_dim, depths=spec.depths, num_heads=spec.num_heads)


# The released Ref-YouTube-VOS checkpoints, and the tiny models trained on the synthetic benchmark.
PRESETS: dict[str, SgMgConfig] = {
    "video_swin_t": _released("tiny"),
    "video_swin_b": _released("base"),
}


def tiny_config(vocab_size: int, *, multi_object: bool = False, num_queries: int = 1) -> SgMgConfig:
    """The small SgMg trained on the synthetic benchmark (a word-level vocabulary, CPU-sized).

    One query by default, not the released five: trained from scratch with five, the queries
    become object slots that ignore the text (Hungarian matching lets each expression pick the
    slot that already covers its object, so only the class loss asks for grounding, and it stays
    flat); with one query the mask losses themselves can only fall if the mask follows the text
    (valid J&F after 2000 steps: 0.376 with five queries, 0.493 with one; docs/sgmg.md).
    """
    return SgMgConfig(
        embed_dim=24,
        depths=(1, 1, 2, 1),
        num_heads=(1, 2, 3, 6),
        drop_path_rate=0.1,
        text=TextConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            intermediate_size=128,
            max_position_embeddings=48,
            frozen=False,
            sentence_pooling="mean",  # a scratch RoBERTa's pooler does not separate sentences
        ),
        hidden_dim=64,
        num_queries=num_queries,
        nheads=4,
        enc_layers=2,
        dec_layers=3,
        dim_feedforward=128,
        enc_n_points=4,
        dec_n_points=4,
        norm_groups=16,
        multi_object=multi_object,
    )


def build_sgmg(config: SgMgConfig, *, attn_implementation: str = "eager"):
    """An SgMg network (random weights) for ``config``."""
    from models.sgmg.model import SgMg

    backbone = VideoSwinBackbone(
        embed_dim=config.embed_dim,
        depths=config.depths,
        num_heads=config.num_heads,
        window_size=config.window_size,
        drop_path_rate=config.drop_path_rate,
    )
    text = RobertaTextEncoder(**asdict(config.text), attn_implementation=attn_implementation)
    cls = SgMg
    if config.multi_object:
        from models.sgmg.multi import MultiObjectSgMg

        cls = MultiObjectSgMg
    return cls(
        backbone=backbone,
        text_encoder=text,
        hidden_dim=config.hidden_dim,
        num_queries=config.num_queries,
        num_heads=config.nheads,
        enc_layers=config.enc_layers,
        dec_layers=config.dec_layers,
        dim_feedforward=config.dim_feedforward,
        dropout=config.dropout,
        enc_n_points=config.enc_n_points,
        dec_n_points=config.dec_n_points,
        dynamic_mask_channels=config.dynamic_mask_channels,
        controller_layers=config.controller_layers,
        scf_sigma=config.scf_sigma,
        norm_groups=config.norm_groups,
    )
