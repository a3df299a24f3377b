"""The parts every network of the ReferFormer / MUTR / SOC family is assembled from.

A leaf's ``build`` module takes :func:`trunk_arguments` (backbone, text encoder, deformable
transformer and the head sizes of :class:`models.family.model.ReferFormer`) and adds its own
mask decoder (:func:`cross_modal_fpn` for ReferFormer and MUTR) and video decoder
(:func:`video_decoder` for MUTR and SOC). Every part gets random weights; load a checkpoint
after.
"""

from __future__ import annotations

from typing import Any

from models.common.cross_modal_fpn import CrossModalFPNDecoder
from models.common.deformable_transformer import DeformableTransformer
from models.common.text_encoder import RobertaTextEncoder
from models.common.vita import VideoQueryDecoder
from models.family.config import FamilyConfig
from models.shared.swin import SwinBackbone
from models.shared.video_swin import VideoSwinBackbone


def backbone(config: FamilyConfig) -> VideoSwinBackbone | SwinBackbone:
    """The per-frame Video Swin, or the 2-D Swin (window = ``window_size[-1]``), of ``config``.

    Both return 4 stages, strides 4..32, ``out_channels`` channels each.
    """
    if config.backbone == "swin":
        return SwinBackbone(
            embed_dim=config.embed_dim,
            depths=config.depths,
            num_heads=config.num_heads,
            window=config.window_size[-1],
            drop_path_rate=config.drop_path_rate,
        )
    return VideoSwinBackbone(
        embed_dim=config.embed_dim,
        depths=config.depths,
        num_heads=config.num_heads,
        window_size=config.window_size,
        drop_path_rate=config.drop_path_rate,
    )


def transformer(config: FamilyConfig) -> DeformableTransformer:
    """The deformable encoder-decoder over the 4 fused levels (width ``d_model``)."""
    return DeformableTransformer(
        d_model=config.d_model,
        n_heads=config.nheads,
        num_encoder_layers=config.enc_layers,
        num_decoder_layers=config.dec_layers,
        dim_feedforward=config.dim_feedforward,
        dropout=config.dropout,
        enc_n_points=config.enc_n_points,
        dec_n_points=config.dec_n_points,
    )


def trunk_arguments(config: FamilyConfig) -> dict[str, Any]:
    """The keyword arguments of :class:`models.family.model.ReferFormer` shared by all three
    networks: backbone, text encoder (``RobertaTextEncoder(**config.text)``), transformer and
    the head sizes. The leaf adds ``mask_decoder`` (and its own parts)."""
    return {
        "backbone": backbone(config),
        "text_encoder": RobertaTextEncoder(**config.text),
        "transformer": transformer(config),
        "d_model": config.d_model,
        "nheads": config.nheads,
        "num_queries": config.num_queries,
        "mask_dim": config.mask_dim,
        "dynamic_mask_channels": config.dynamic_mask_channels,
        "controller_layers": config.controller_layers,
        "input_proj_groups": config.input_proj_groups,
    }


def cross_modal_fpn(
    config: FamilyConfig, backbone: VideoSwinBackbone | SwinBackbone
) -> CrossModalFPNDecoder:
    """ReferFormer's (and MUTR's) pixel decoder: the stride-4 backbone map (its channels) and
    the memory at strides 8..32 (``d_model``) -> N x mask_dim x h4 x w4 mask features."""
    return CrossModalFPNDecoder(
        [backbone.out_channels[0], *[config.d_model] * 3],
        conv_dim=config.d_model,
        mask_dim=config.mask_dim,
        dim_feedforward=config.fpn_dim_feedforward,
        nhead=config.nheads,
        norm_groups=config.fpn_norm_groups,
    )


def video_decoder(config: FamilyConfig, *, learned_init: bool) -> VideoQueryDecoder:
    """The VITA video decoder of MUTR (MTI: ``learned_init``, windowed) and SOC (VOC: queries
    initialised from the sentence): ``num_queries`` frame queries -> as many video queries."""
    return VideoQueryDecoder(
        d_model=config.d_model,
        num_frame_queries=config.num_queries,
        num_queries=config.num_queries,
        nheads=config.nheads,
        dim_feedforward=config.video_dim_feedforward,
        enc_layers=config.video_enc_layers,
        dec_layers=config.video_dec_layers,
        window_size=config.video_window,
        learned_init=learned_init,
        dropout=config.video_dropout,
    )
