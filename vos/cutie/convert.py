"""Official Cutie state dicts -> :class:`~vos.cutie.network.CutieNetwork`, strict key accounting.

The release checkpoints (``cutie-base-mega.pth``, ``cutie-small-mega.pth``, release v1.0) are
bare state dicts of the official ``CUTIE`` module, loaded upstream with the non-strict
``CUTIE.load_weights``. Here every key is accounted for:

- the port's names equal the official ones (``module.`` prefixes of DataParallel copies are
  dropped);
- ``aux_computer.*`` (the training-only auxiliary sensory head) is skipped on purpose;
- a single-object checkpoint (``mask_encoder.conv1.weight`` with 4 input channels, or
  ``pixel_fuser.sensory_compress.weight`` with ``sensory_dim + 1``) gets a zero input channel
  appended, as upstream ``load_weights(init_as_zero_if_needed=True)`` (its default fills it with
  a random orthogonal channel instead, which no two runs share);
- anything else missing, unexpected or mis-shaped fails, naming every key.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from models.shared.checkpoint import (
    CheckpointError,
    KeyReport,
    RenameRule,
    SkipRule,
    convert_state_dict,
    extract_state_dict,
    load_state_strict,
)
from vos.cutie.network import CutieNetwork
from vos.cutie.spec import CutieSpec

RENAME = (RenameRule(r"^module\.", ""),)
SKIP = (SkipRule(r"aux_computer\..*", "training-only auxiliary head (aux losses)"),)


def official_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The bare state dict of an official file (a ``model`` / ``state_dict`` / ``weights``
    wrapper is accepted too: the training checkpoints hold ``weights``)."""
    return extract_state_dict(checkpoint, candidates=("weights", "model", "state_dict"))


def _widen_single_object(state: dict[str, torch.Tensor], spec: CutieSpec) -> None:
    """Append a zero input channel to the single-object layers (in place)."""
    widths = {
        "mask_encoder.conv1.weight": 4,
        "pixel_fuser.sensory_compress.weight": spec.sensory_dim + 1,
    }
    for key, single in widths.items():
        tensor = state.get(key)
        if tensor is not None and tensor.ndim == 4 and tensor.shape[1] == single:
            pad = torch.zeros_like(tensor[:, :1])
            state[key] = torch.cat([tensor, pad], dim=1)


def convert_official(
    official: Mapping[str, torch.Tensor], spec: CutieSpec
) -> tuple[dict[str, torch.Tensor], KeyReport]:
    """Official keys -> the port's state dict and what happened to every key."""
    state, skipped = convert_state_dict(official, rename=RENAME, skip=SKIP)
    _widen_single_object(state, spec)
    return state, KeyReport(loaded=sorted(state), skipped=skipped)


def load_official(
    network: CutieNetwork, official: Mapping[str, torch.Tensor], *, what: str = "Cutie checkpoint"
) -> KeyReport:
    """Load an official state dict into ``network`` strictly; returns the key report."""
    state, report = convert_official(official, network.spec)
    load_state_strict(network, state, what=what)
    return report


def infer_variant(official: Mapping[str, torch.Tensor]) -> str:
    """``base`` or ``small`` from the pixel encoder's depth (ResNet-50 has a ``conv3``)."""
    keys = [k.removeprefix("module.") for k in official]
    if "pixel_encoder.res2.0.conv3.weight" in keys:
        return "base"
    if "pixel_encoder.res2.0.conv1.weight" in keys:
        return "small"
    raise CheckpointError("not a Cutie state dict: no pixel_encoder.res2.0 weights")
