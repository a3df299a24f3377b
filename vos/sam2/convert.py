"""Official SAM 2 / SAM 2.1 checkpoints -> :class:`~vos.sam2.model.Sam2Model`, strict.

The release files (``sam2{,.1}_hiera_{tiny,small,base_plus,large}.pt``) are
``{"model": state_dict}``, loaded upstream with a strict ``load_state_dict``
(facebookresearch/sam2@2b90b9f ``sam2/build_sam.py::_load_checkpoint``). The port's parameter
names equal the official ones, so nothing is renamed or skipped: every key is loaded, and any
missing, unexpected or mis-shaped key fails naming them all. A 2.0 file given as a 2.1 variant
(or the reverse) is reported as such before the key list.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from models.shared.checkpoint import (
    CheckpointError,
    KeyReport,
    extract_state_dict,
    load_state_strict,
)
from vos.sam2.model import Sam2Model
from vos.sam2.spec import Sam2Spec

VERSION_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")


def official_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The state dict of an official file (under ``model``) or a bare state dict."""
    return extract_state_dict(checkpoint, candidates=("model",))


def version_of(state: Mapping[str, torch.Tensor]) -> str:
    """``"2.1"`` when the 2.1-only parameters are present, else ``"2.0"``."""
    return "2.1" if all(k in state for k in VERSION_KEYS) else "2.0"


def check_version(spec: Sam2Spec, state: Mapping[str, torch.Tensor], where: str) -> None:
    found = version_of(state)
    if found != spec.version:
        raise CheckpointError(
            f"{where}: a SAM {found} checkpoint, but the variant {spec.name!r} is SAM "
            f"{spec.version} (2.1 adds {list(VERSION_KEYS)})"
        )


def load_official(
    model: Sam2Model, checkpoint: Mapping[str, object], *, what: str = "sam2 checkpoint"
) -> KeyReport:
    """Load an official checkpoint into ``model`` strictly; every key is loaded."""
    state = official_state_dict(checkpoint)
    check_version(model.spec, state, what)
    load_state_strict(model, state, what=what)
    return KeyReport(loaded=list(state))
