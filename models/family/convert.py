"""Official ReferFormer / MUTR / SOC checkpoints -> the family's modules, with strict accounting.

Each leaf names its layout (``models.referformer.convert.REFERFORMER_LAYOUT``,
``models.mutr.convert.MUTR_LAYOUT``, ``models.soc.convert.SOC_LAYOUT``); :func:`load_official`
loads any of them.

Containers: ReferFormer and MUTR save ``{'model': state_dict, 'optimizer', 'lr_scheduler',
'epoch', 'args': argparse.Namespace}`` (``main.py``); SOC saves ``{'model_state_dict': ...,
'optimizer_state_dict', ...}`` (``trainer.py``). Files are read by
:func:`models.shared.checkpoint.read_checkpoint` (``weights_only=True`` with an allow-list).

Key map (official -> port), prefixes:

=====================================  ==================================  =================
official                               port                                models
=====================================  ==================================  =================
``backbone.0.body.``                   ``backbone.``                       all
``text_encoder.``                      ``text_encoder.model.``             all
``resizer.`` / ``txt_proj.``           ``text_proj.``                      RF, MUTR / SOC
``fusion_module.`` / ``vlf.``          ``fusion.``                         RF, MUTR / SOC
``pixel_decoder.``                     ``mask_decoder.``                   RF, MUTR
``spatial_decoder.``                   ``mask_decoder.``                   SOC
``MTA.``                               ``mta.``                            MUTR
``mti.``                               ``video_decoder.``                  MUTR
``voc.`` or ``vita.``                  ``video_decoder.``                  SOC (``vita`` =
                                                                           challenge copy)
``lvf.``                               ``text_from_video.``                SOC
``transformer.decoder.bbox_embed.``    tied to ``bbox_embed.`` (folded)    all
=====================================  ==================================  =================

Everything else (``transformer.*``, ``input_proj.*``, ``query_embed``, ``class_embed.*``,
``bbox_embed.*``, ``controller.*``) keeps its name. Dropped on purpose: RoBERTa
``embeddings.position_ids`` (a buffer of transformers < 4.31), every Video-Swin
``relative_position_index`` (derived from the window; checked equal to the port's first), thop's
``total_ops`` / ``total_params`` counters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from models.common.rvos_checkpoint import RVOS_SKIPS, prefix_renamer
from models.shared.checkpoint import (
    CheckpointError,
    KeyReport,
    convert_state_dict,
    extract_state_dict,
    load_state_strict,
)
from models.shared.video_swin import check_relative_position_index

# Official -> port prefixes every model of the family shares.
COMMON_PREFIXES = (
    ("backbone.0.body.", "backbone."),
    ("text_encoder.", "text_encoder.model."),
    ("transformer.decoder.bbox_embed.", "bbox_embed."),
)


@dataclass(frozen=True)
class CheckpointLayout:
    """How one official model stores its weights.

    Attributes:
        name: the model, for messages.
        containers: keys of the file dict that may hold the state dict, in order.
        prefixes: (official, port) prefix renames beyond the family's common ones.
    """

    name: str
    containers: tuple[str, ...]
    prefixes: tuple[tuple[str, str], ...]

    def rename(self, key: str) -> str:
        return prefix_renamer((*COMMON_PREFIXES, *self.prefixes))(key)


def convert_official(
    checkpoint: Mapping[str, object], layout: CheckpointLayout
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The port's state dict from an official file's content (or its bare state dict)."""
    official = extract_state_dict(checkpoint, layout.containers)
    check_relative_position_index(official, "backbone.0.body.")
    return convert_state_dict(official, rename=layout.rename, skip=RVOS_SKIPS)


def load_official(
    model: nn.Module,
    checkpoint: Mapping[str, object],
    layout: CheckpointLayout,
    *,
    allow_missing: Sequence[str] = (),
) -> KeyReport:
    """Load an official checkpoint into ``model`` strictly; raises on any key mismatch."""
    state, skipped = convert_official(checkpoint, layout)
    if not state:
        raise CheckpointError(f"{layout.name} checkpoint holds no weights")
    load_state_strict(model, state, what=f"{layout.name} checkpoint", allow_missing=allow_missing)
    return KeyReport(loaded=sorted(state), skipped=skipped)
