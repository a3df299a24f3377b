"""``lsvos parity`` for MUTR (the family's runner, MUTR's builder and key layout, plus the MTI
tap)."""

from __future__ import annotations

import numpy as np

from models.family.model import ReferFormer
from models.family.parity import (
    build_for_case,
    config_from_case,
    family_outputs,
    referformer_style_arrays,
)
from models.mutr.build import build_mutr
from models.mutr.convert import MUTR_LAYOUT
from models.shared.checkpoint import KeyReport
from models.shared.parity_case import ParityCase


def _build(case: ParityCase) -> tuple[ReferFormer, KeyReport]:
    return build_for_case(case, config_from_case(case.config), build_mutr, MUTR_LAYOUT)


def convert_parity(case: ParityCase) -> KeyReport:
    return _build(case)[1]


def run_parity(case: ParityCase) -> dict[str, np.ndarray]:
    model, _ = _build(case)
    result = family_outputs(model, case.inputs)
    arrays = referformer_style_arrays(result)
    arrays["mti_output"] = result["video_queries"][0, 0].float().numpy()
    return arrays
