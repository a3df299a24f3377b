"""``lsvos parity`` for SgMg: the official Ref-YouTube-VOS forward and post-processing."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.common.rvos_inference import logits_to_size, select_query
from models.sgmg.build import SgMgConfig, TextConfig, build_sgmg
from models.sgmg.convert import load_official
from models.sgmg.model import SgMg, pad_video
from models.shared.checkpoint import KeyReport
from models.shared.parity_case import ParityCase


def config_from_case(config: dict[str, Any]) -> SgMgConfig:
    """The network a case describes (its ``variant`` block), not its folder name."""
    variant = config["variant"]
    backbone = variant["backbone"]
    text = variant.get("text_encoder", {})
    text_fields = {
        "vocab_size": text.get("vocab_size", 50265),
        "hidden_size": text.get("hidden_size", 768),
        "num_layers": text.get("num_hidden_layers", 12),
        "num_heads": text.get("num_attention_heads", 12),
        "intermediate_size": text.get("intermediate_size", 3072),
        "max_position_embeddings": text.get("max_position_embeddings", 514),
        "type_vocab_size": text.get("type_vocab_size", 1),
        "layer_norm_eps": text.get("layer_norm_eps", 1e-5),
        "pad_token_id": text.get("pad_token_id", 1),
    }
    return SgMgConfig(
        embed_dim=backbone["embed_dim"],
        depths=tuple(backbone["depths"]),
        num_heads=tuple(backbone["num_heads"]),
        window_size=tuple(backbone.get("window_size", (8, 7, 7))),
        text=TextConfig(**text_fields),
        hidden_dim=variant.get("hidden_dim", 256),
        num_queries=variant.get("num_queries", 5),
        nheads=variant.get("nheads", 8),
        enc_layers=variant.get("enc_layers", 4),
        dec_layers=variant.get("dec_layers", 4),
        dim_feedforward=variant.get("dim_feedforward", 2048),
        enc_n_points=variant.get("enc_n_points", 4),
        dec_n_points=variant.get("dec_n_points", 4),
        dynamic_mask_channels=variant.get("dynamic_mask_channels", 16),
        controller_layers=variant.get("controller_layers", 2),
        scf_sigma=variant.get("scf_sigma", 7.0),
    )


def _model(case: ParityCase) -> tuple[SgMg, KeyReport]:
    model = build_sgmg(config_from_case(case.config)).eval()
    report = load_official(model, case.state)
    return model, report


def convert_parity(case: ParityCase) -> KeyReport:
    return _model(case)[1]


@torch.inference_mode()
def run_parity(case: ParityCase) -> dict[str, np.ndarray]:
    model, _ = _model(case)
    inputs = case.inputs
    frames = torch.from_numpy(inputs["frames"]).float()
    h, w = (int(v) for v in inputs["image_size"])
    orig = tuple(int(v) for v in inputs["orig_size"])
    taps: dict[str, torch.Tensor] = {}
    video = model.encode_video(pad_video(frames)[None], torch.tensor([[h, w]]), taps=taps)
    text = model.encode_text(
        torch.from_numpy(inputs["input_ids"]).long(),
        torch.from_numpy(inputs["attention_mask"]).long(),
        taps=taps,
    )
    last = model.num_decoder_layers - 1
    out = model.decode(video, text, mask_layers=[last], taps=taps)
    patch = out.patch_logits[last]  # T x Q x 16 x h8 x w8
    f4, f8 = video.backbone[0], video.backbone[1]
    mso = torch.stack([model.refine(patch[:, q], f4, f8) for q in range(patch.shape[1])], 1)
    chosen = select_query(out.logits[-1])
    sel = chosen.index
    prob = logits_to_size(mso[:, sel, :h, :w], orig).sigmoid()
    results = {
        "pred_logits_layers": out.logits[..., None],
        "pred_boxes_layers": out.boxes,
        "dec_hs": out.hs,
        "init_reference": out.init_reference,
        "inter_references": out.references,
        "cpk_patch_masks": SgMg.patch_to_low_res(patch),
        "mso_masks_all": mso,
        "sel_pred_logits": out.logits[-1][:, sel, None],
        "sel_pred_boxes": out.boxes[-1][:, sel],
        "sel_reference_points": out.references[-2][:, sel, :2],
        "post_prob": prob,
        "post_mask": (prob > 0.5).float(),
        "post_query_index": torch.tensor([float(sel)]),
        "post_scores": chosen.frame_scores,
        "query_mean_scores": chosen.mean_scores,
        "text_word_raw": taps["text_word_raw"][0],
        "text_sentence_raw": taps["text_sentence_raw"][0],
        "text_word_features": taps["text_word_features"][0],
        "text_sentence_features": taps["text_sentence_features"][0],
        "scf3_pre": taps["scf3_pre"],
        "scf3_fused": taps["scf3_fused"],
        "scf3_post": taps["scf3_post"],
        "scf3_gauss": taps["scf3_gauss"],
        "scf3_coef_pre": taps["scf3_coef_pre"],
        "scf3_coef_post": taps["scf3_coef_post"],
    }
    return {k: v.detach().float().cpu().numpy() for k, v in results.items()}
