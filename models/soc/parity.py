"""``lsvos parity`` for SOC (the family's runner, SOC's config block, builder, key layout and
array names)."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.family.config import FamilyConfig
from models.family.model import ReferFormer
from models.family.parity import build_for_case, family_outputs, text_config
from models.shared.checkpoint import KeyReport
from models.shared.parity_case import ParityCase
from models.soc.build import build_soc
from models.soc.convert import SOC_LAYOUT


def config_from_case(config: dict[str, Any]) -> FamilyConfig:
    """The SOC network a case describes (``video_swin``, ``roberta_config``, ``voc``)."""
    hp = config["hyper_parameters"]
    swin = hp["video_swin"]
    text = hp.get("roberta_config", {})
    voc = hp.get("voc", {})
    return FamilyConfig(
        model="soc",
        embed_dim=swin["embed_dim"],
        depths=tuple(swin["depths"]),
        num_heads=tuple(swin["num_heads"]),
        window_size=tuple(swin.get("window_size", (8, 7, 7))),
        text=text_config(text),
        d_model=hp.get("d_model", 256),
        nheads=hp.get("nheads", 8),
        num_queries=hp.get("num_queries", 20),
        enc_layers=hp.get("enc_layers", 3),
        dec_layers=hp.get("dec_layers", 3),
        dim_feedforward=hp.get("dim_feedforward", 2048),
        enc_n_points=hp.get("enc_n_points", 4),
        dec_n_points=hp.get("dec_n_points", 4),
        mask_dim=hp.get("mask_kernels_dim", 8),
        dynamic_mask_channels=hp.get("dynamic_mask_channels", 8),
        controller_layers=hp.get("controller_layers", 3),
        video_window=voc.get("window_size", 0),
        video_enc_layers=voc.get("enc_layers", 3),
        video_dec_layers=voc.get("dec_layers", 3),
        video_dim_feedforward=voc.get("dim_feedforward", 2048),
        video_dropout=0.1,
    )


def _build(case: ParityCase) -> tuple[ReferFormer, KeyReport]:
    return build_for_case(case, config_from_case(case.config), build_soc, SOC_LAYOUT)


def convert_parity(case: ParityCase) -> KeyReport:
    return _build(case)[1]


def run_parity(case: ParityCase) -> dict[str, np.ndarray]:
    model, _ = _build(case)
    r = family_outputs(model, case.inputs)
    arrays = {
        "pred_logits": r["pred_logits"],
        "pred_boxes": r["pred_boxes"],
        "pred_masks": r["pred_masks"],
        "video_scores": r["mean_scores"],
        "selected_query": r["query_index"].reshape(1),
        "frame_scores": r["frame_scores"],
        "mask_logits_orig": r["mask_logits"],
        "mask_probs": r["mask_probs"],
        "binary_masks": r["masks"],
        "text_sentence_feature": r["text_sentence"],
        "decoder_hs_last": r["decoder_hs"][-1],
        "voc_out": r["video_queries"][0, 0],
        "mask_features": r["mask_features"],
    }
    return {k: v.detach().float().cpu().numpy() for k, v in arrays.items()}
