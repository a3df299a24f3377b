"""The shared ``lsvos parity`` runner of the ReferFormer / MUTR / SOC family: official forward +
YTVOS post-process.

Each leaf's parity module (``models.referformer.parity``, ``models.mutr.parity``,
``models.soc.parity``) reads its network's config from the case's ``config.json`` (its
hyper-parameters, never the folder name), builds it with its own builder and hands it to
:func:`build_for_case`; weights go through the family's converter (strict); the Ref-YouTube-VOS
post-processing is :mod:`models.common.rvos_inference`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from models.common.rvos_inference import logits_to_size, select_query
from models.family.config import FamilyConfig
from models.family.convert import CheckpointLayout, load_official
from models.family.model import ReferFormer
from models.shared.checkpoint import KeyReport
from models.shared.parity_case import ParityCase


def text_config(block: dict[str, Any]) -> dict[str, Any]:
    """RobertaTextEncoder kwargs from a case's text block (either naming style)."""

    def pick(*names: str, default: Any) -> Any:
        for name in names:
            if name in block:
                return block[name]
        return default

    return {
        "vocab_size": pick("vocab_size", default=50265),
        "hidden_size": pick("hidden_size", "hidden", default=768),
        "num_layers": pick("num_hidden_layers", "layers", default=12),
        "num_heads": pick("num_attention_heads", "heads", default=12),
        "intermediate_size": pick("intermediate_size", "intermediate", default=3072),
        "max_position_embeddings": pick("max_position_embeddings", default=514),
        "type_vocab_size": pick("type_vocab_size", default=1),
        "layer_norm_eps": pick("layer_norm_eps", default=1e-5),
        "pad_token_id": pick("pad_token_id", default=1),
    }


def _window(value: Any) -> tuple[int, int, int]:
    """(T, H, W) window from a case (a 2-D Swin gives one int or (H, W))."""
    if isinstance(value, int):
        return (1, value, value)
    value = tuple(value)
    return value if len(value) == 3 else (1, *value)  # type: ignore[return-value]


def config_from_case(config: dict[str, Any]) -> FamilyConfig:
    """The ReferFormer or MUTR network a case describes (family + hyper-parameters)."""
    family = config["family"]
    hp = config["hyper_parameters"]
    swin = hp["backbone"]
    kind = (
        "video_swin"
        if "video" in f"{swin.get('type', '')} {swin.get('name', '')}".lower()
        else "swin"
    )
    mta = hp.get("mta", {})
    mti = hp.get("mti", {})
    return FamilyConfig(
        model=family,
        backbone=kind,
        embed_dim=swin["embed_dim"],
        depths=tuple(swin["depths"]),
        num_heads=tuple(swin["num_heads"]),
        window_size=_window(swin.get("window_size", (8, 7, 7))),
        text=text_config(hp.get("text_encoder", {})),
        d_model=hp.get("d_model", 256),
        nheads=hp.get("nheads", 8),
        num_queries=hp.get("num_queries", 5),
        enc_layers=hp.get("enc_layers", 4),
        dec_layers=hp.get("dec_layers", 4),
        dim_feedforward=hp.get("dim_feedforward", 2048),
        enc_n_points=hp.get("enc_n_points", 4),
        dec_n_points=hp.get("dec_n_points", 4),
        mask_dim=hp.get("mask_dim", 256),
        dynamic_mask_channels=hp.get("dynamic_mask_channels", 8),
        controller_layers=hp.get("controller_layers", 3),
        fpn_norm_groups=hp.get("fpn_groupnorm_groups", 8),
        input_proj_groups=hp.get("input_proj_groupnorm_groups", 32),
        mta_layers=mta.get("layers", 1),
        mta_dim_feedforward=mta.get("d_ffn", 2048),
        video_window=mti.get("window_size", 4),
        video_enc_layers=mti.get("enc_layers", 3),
        video_dec_layers=mti.get("dec_layers", 3),
        video_dim_feedforward=mti.get("dim_feedforward", 2048),
    )


def build_for_case(
    case: ParityCase,
    config: FamilyConfig,
    build: Callable[[FamilyConfig], ReferFormer],
    layout: CheckpointLayout,
) -> tuple[ReferFormer, KeyReport]:
    """The network ``build`` makes of ``config`` in eval mode, the case's official state loaded
    through ``layout`` strictly, and the key report."""
    model = build(config).eval()
    report = load_official(model, case.state, layout)
    return model, report


@torch.inference_mode()
def family_outputs(model: ReferFormer, inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The official Ref-YouTube-VOS forward of one video and one expression, with its taps."""
    frames = torch.from_numpy(inputs["frames"]).float()
    orig = tuple(int(v) for v in inputs["orig_size"])
    video = model.encode_video(frames[None])
    text = model.encode_text(
        torch.from_numpy(inputs["input_ids"]).long(),
        torch.from_numpy(inputs["attention_mask"]).long(),
    )
    out = model.decode(video, text, taps=True)
    logits, masks = out.pred_logits[0, 0], out.pred_masks[0, 0]  # T x Q, T x Q x h x w
    chosen = select_query(logits)
    mask_logits = logits_to_size(masks[:, chosen.index], orig)
    probs = mask_logits.sigmoid()
    result = {
        "pred_logits": logits,
        "pred_boxes": out.pred_boxes[0, 0],
        "pred_masks": masks,
        "query_index": torch.tensor(float(chosen.index)),
        "mean_scores": chosen.mean_scores,
        "frame_scores": chosen.frame_scores,
        "mask_logits": mask_logits,
        "mask_probs": probs,
        "masks": (probs > 0.5).float(),
        **{k: v for k, v in out.taps.items()},
    }
    return result


def _numpy(arrays: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().float().cpu().numpy() for k, v in arrays.items()}


def referformer_style_arrays(r: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The array names of the ReferFormer and MUTR cases."""
    return _numpy(
        {
            "pred_logits": r["pred_logits"][..., None],
            "pred_boxes": r["pred_boxes"],
            "pred_masks": r["pred_masks"],
            "post_query_index": r["query_index"],
            "post_query_mean_scores": r["mean_scores"],
            "post_frame_scores": r["frame_scores"],
            "post_mask_logits": r["mask_logits"],
            "post_mask_probs": r["mask_probs"],
            "post_masks": r["masks"],
            "text_word_features": r["text_words"][0],
            "text_pooled_features": r["text_sentence"][0],
            "decoder_tgt": r["decoder_content"][0],
            "backbone_c5_c64": r["backbone_last"][:, :64],
            "fused_src_l2": r["fused_l2"],
            "enc_memory_l2": r["memory_l2"],
            "init_reference": r["init_reference"],
            "inter_references": r["references"],
            "decoder_hs": r["decoder_hs"],
            "mask_features_c8": r["mask_features"][:, :8],
        }
    )
