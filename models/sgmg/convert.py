"""Official SgMg checkpoints -> :class:`models.sgmg.model.SgMg` weights, with strict accounting.

The official file is ``{'model': state_dict, ...}`` (plus optimizer, epoch and a pickled
``argparse.Namespace`` under ``'args'``; :func:`models.shared.checkpoint.read_checkpoint` reads it
without running any other pickle). Key map (``bo-miao/SgMg`` ``models/sgmg.py``):

===========================================  ===============================================
official                                     port
===========================================  ===============================================
``backbone.0.body.*``                        ``backbone.*`` (the Joiner's position module
                                             has no weights)
``text_encoder.text_backbone.*``             ``text_encoder.model.*``
``transformer.decoder.bbox_embed.{l}.*``     tied to ``bbox_embed.{l}.*`` (checked equal,
                                             folded)
everything else                              same name
===========================================  ===============================================

Dropped on purpose: RoBERTa ``embeddings.position_ids`` (transformers < 4.31 buffer), every
Video-Swin ``relative_position_index`` (derived; checked equal to the port's), thop's
``total_ops`` / ``total_params`` counters.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models.common.rvos_checkpoint import RVOS_SKIPS, prefix_renamer
from models.shared.checkpoint import (
    KeyReport,
    convert_state_dict,
    extract_state_dict,
    load_state_strict,
)
from models.shared.video_swin import check_relative_position_index

# Official SgMg key -> port key.
rename = prefix_renamer(
    (
        ("backbone.0.body.", "backbone."),
        ("text_encoder.text_backbone.", "text_encoder.model."),
        ("transformer.decoder.bbox_embed.", "bbox_embed."),
    )
)


def convert_official(
    checkpoint: Mapping[str, object],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The port's state dict from an official file's content (or its bare state dict)."""
    official = extract_state_dict(checkpoint, ("model",))
    check_relative_position_index(official, "backbone.0.body.")
    return convert_state_dict(official, rename=rename, skip=RVOS_SKIPS)


def load_official(model: nn.Module, checkpoint: Mapping[str, object]) -> KeyReport:
    """Load an official SgMg checkpoint into ``model`` strictly; raises on any key mismatch."""
    state, skipped = convert_official(checkpoint)
    load_state_strict(model, state, what="SgMg checkpoint")
    return KeyReport(loaded=sorted(state), skipped=skipped)
