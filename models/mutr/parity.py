"""``lsvos parity`` for MUTR (the family's runner, MUTR's key layout, plus the MTI tap)."""

from __future__ import annotations

import numpy as np

from models.mutr.convert import MUTR_LAYOUT
from models.referformer.parity import build_for_case, family_outputs, referformer_style_arrays
from models.shared.checkpoint import KeyReport
from models.shared.parity_case import ParityCase


def convert_parity(case: ParityCase) -> KeyReport:
    return build_for_case(case, MUTR_LAYOUT)[1]


def run_parity(case: ParityCase) -> dict[str, np.ndarray]:
    model, _ = build_for_case(case, MUTR_LAYOUT)
    result = family_outputs(model, case.inputs)
    arrays = referformer_style_arrays(result)
    arrays["mti_output"] = result["video_queries"][0, 0].float().numpy()
    return arrays
