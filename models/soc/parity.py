"""``lsvos parity`` for SOC (the family's runner, SOC's key layout and array names)."""

from __future__ import annotations

import numpy as np

from models.referformer.parity import build_for_case, family_outputs
from models.shared.checkpoint import KeyReport
from models.shared.parity_case import ParityCase
from models.soc.convert import SOC_LAYOUT


def convert_parity(case: ParityCase) -> KeyReport:
    return build_for_case(case, SOC_LAYOUT)[1]


def run_parity(case: ParityCase) -> dict[str, np.ndarray]:
    model, _ = build_for_case(case, SOC_LAYOUT)
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
