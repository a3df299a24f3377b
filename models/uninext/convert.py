"""Official UNINEXT checkpoints (detectron2 ``model_final.pth`` ``['model']``) -> the port.

Every official key is either mapped to exactly one port key or skipped by name with a reason;
the result then goes through :func:`models.shared.checkpoint.load_state_strict`, so a missing,
unexpected or mis-shaped key fails with the full list. Reading the file is the pipeline's job
(:func:`models.shared.checkpoint.read_checkpoint`, ``weights_only=True``).

Key map (official -> port):

* ``detr.detr.backbone.0.backbone.*`` -> ``backbone.*``
* ``detr.detr.input_proj.*`` -> ``input_proj.*``
* ``text_encoder.body.model.*`` -> ``text_encoder.bert.*``
* ``detr.detr.transformer.encoder.vl_layers.{i}.b_attn.*`` ->
  ``transformer.encoder.fusion_layers.{i}.*``
* ``detr.detr.transformer.*`` (the rest) -> ``transformer.*``
* ``detr.detr[.transformer.decoder].bbox_embed.{i}.*`` -> ``bbox_embed.{i}.*`` (the two tied
  copies must hold equal tensors)
* ``detr.detr[.transformer.decoder].class_embed.{i}.*`` -> ``class_embed.{i}.*`` for i < the
  decoder depth, and ``class_embed.{depth}.body.*`` -> ``proposal_class.*``
* ``detr.detr.iou_head.*``, ``detr.controller.*``, ``detr.mask_head.*`` -> ``iou_head.*``,
  ``controller.*``, ``mask_head.*``

ConvNeXt's ``nn.Embedding``-held LayerNorm and layer-scale tensors (``*.weight.weight``,
``*.bias.weight``, ``*.gamma.weight``, 1 x C) become plain C-vectors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from models.shared.checkpoint import (
    CheckpointError,
    KeyReport,
    SkipRule,
    convert_state_dict,
    load_state_strict,
)
from models.uninext.model import UninextModel

POSITION_IDS = "text_encoder.body.model.embeddings.position_ids"

SKIP_RULES: tuple[SkipRule, ...] = (
    SkipRule(
        r"detr\.detr\.ref_backbone\..*",
        "second backbone (4-channel input) for SOT/VOS templates; RVOS never runs it",
    ),
    SkipRule(
        r"detr\.reid_embed_head\..*",
        "deformable ReID head for tracking (MOT/VIS); RVOS inference discards its output",
    ),
    SkipRule(r"detr\.sot_fuser\..*", "SOT template feature fuser; unused for RVOS"),
    SkipRule(r"detr\.adjust_layer\..*", "SOT/VOS template-to-text-space projection; unused"),
    SkipRule(
        r"detr\.resizer\..*",
        "DINO denoising label encoder (dynamic label enc.): training-only denoising queries",
    ),
    SkipRule(
        r"detr\.detr\.transformer\.resizer\..*",
        "language-to-query resizer; its output enters the queries times 0 (DECOUPLE_TGT + "
        "STILL_TGT_FOR_BOTH), so it cannot change any output",
    ),
    SkipRule(r"criterion\._iter", "training-loss iteration counter"),
    SkipRule(
        re.escape(POSITION_IDS),
        "BERT position ids (arange), a buffer transformers >= 4.31 derives itself",
    ),
)

_EMBEDDING_HELD = re.compile(r"^(backbone\..*)\.(weight|bias|gamma)\.weight$")


def _port_key(key: str, dec_layers: int) -> str:
    """The port name of official ``key`` (unchanged when no rule applies: it then fails)."""
    if key.startswith("text_encoder.body.model."):
        return "text_encoder.bert." + key[len("text_encoder.body.model.") :]
    if key.startswith("detr.controller.") or key.startswith("detr.mask_head."):
        return key[len("detr.") :]
    if not key.startswith("detr.detr."):
        return key
    key = key[len("detr.detr.") :]
    if key.startswith("backbone.0.backbone."):
        key = "backbone." + key[len("backbone.0.backbone.") :]
        return _EMBEDDING_HELD.sub(r"\1.\2", key)
    head = re.fullmatch(r"(?:transformer\.decoder\.)?(bbox_embed|class_embed)\.(\d+)\.(.*)", key)
    if head:
        name, index, rest = head.group(1), int(head.group(2)), head.group(3)
        if name == "class_embed" and index == dec_layers:
            return "proposal_class." + rest.removeprefix("body.")
        return f"{name}.{index}.{rest}"
    fusion = re.fullmatch(r"transformer\.encoder\.vl_layers\.(\d+)\.b_attn\.(.*)", key)
    if fusion:
        return f"transformer.encoder.fusion_layers.{fusion.group(1)}.{fusion.group(2)}"
    return key


def convert_official(
    official: Mapping[str, torch.Tensor], dec_layers: int
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename (and reshape) an official state dict; returns (port state, skipped keys)."""
    ids = official.get(POSITION_IDS)
    if (
        ids is not None
        and not ids.is_meta
        and not torch.equal(ids.reshape(-1), torch.arange(ids.numel(), dtype=ids.dtype))
    ):
        raise CheckpointError(f"{POSITION_IDS} is not 0..{ids.numel() - 1}; refusing to drop it")
    state, skipped = convert_state_dict(
        official, rename=lambda k: _port_key(k, dec_layers), skip=SKIP_RULES
    )
    for key in list(state):
        if _embedding_held(key, official):
            state[key] = state[key].reshape(-1)
    return state, skipped


def _embedding_held(port_key: str, official: Mapping[str, torch.Tensor]) -> bool:
    """True for ConvNeXt tensors stored as 1 x C embedding weights upstream."""
    if not port_key.startswith("backbone."):
        return False
    return ("detr.detr.backbone.0." + port_key + ".weight") in official


def load_official_weights(
    model: UninextModel, official: Mapping[str, torch.Tensor], *, what: str = "UNINEXT checkpoint"
) -> KeyReport:
    """Convert ``official`` and load it strictly into ``model``; lists what was skipped."""
    state, skipped = convert_official(official, model.num_dec_layers)
    load_state_strict(model, state, what=what)
    return KeyReport(loaded=sorted(state), skipped=skipped)
