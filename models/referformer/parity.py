"""``lsvos parity`` for ReferFormer (the family's runner with ReferFormer's builder and layout)."""

from __future__ import annotations

import numpy as np

from models.family.model import ReferFormer
from models.family.parity import (
    build_for_case,
    config_from_case,
    family_outputs,
    referformer_style_arrays,
)
from models.referformer.build import build_referformer
from models.referformer.convert import REFERFORMER_LAYOUT
from models.shared.checkpoint import KeyReport
from models.shared.parity_case import ParityCase


def _build(case: ParityCase) -> tuple[ReferFormer, KeyReport]:
    config = config_from_case(case.config)
    return build_for_case(case, config, build_referformer, REFERFORMER_LAYOUT)


def convert_parity(case: ParityCase) -> KeyReport:
    return _build(case)[1]


def run_parity(case: ParityCase) -> dict[str, np.ndarray]:
    model, _ = _build(case)
    return referformer_style_arrays(family_outputs(model, case.inputs))
