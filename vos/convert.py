"""Official AOT / DeAOT checkpoints -> the project's networks, with strict key accounting.

Official files (aot-benchmark ``utils/checkpoint.py::save_network``) hold
``{'state_dict': ..., 'optimizer': ...}`` with plain ``nn.Module`` keys; some copies hold the raw
state dict or a ``'model'`` entry, or keys prefixed ``module.`` (DataParallel). The official
loader silently drops unknown keys and leaves missing ones at random init; here every key must
be accounted for: the only key dropped on purpose is ``LSTT.mask_token`` (an unused parameter of
aot-benchmark main, absent from older copies such as the RVOS challenge's).

Key map (official -> project): ``LSTT.`` -> ``propagation.``, ``patch_wise_id_bank.`` ->
``id_bank.``; everything else keeps its name. A Swin encoder's ``relative_position_index``
buffers are derived from the window: each is checked against the encoder's own (a mismatch is an
error naming the key) and not loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

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
from models.shared.video_swin import check_relative_position_index
from vos.aot import AOT
from vos.encoders.mobilenetv2 import make_divisible
from vos.encoders.swin import SwinEncoder
from vos.variants import EncoderSpec, EngineSpec

RENAME = (
    RenameRule(r"^module\.", ""),
    RenameRule(r"^LSTT\.", "propagation."),
    RenameRule(r"^patch_wise_id_bank\.", "id_bank."),
)
SKIP = (SkipRule(r"(module\.)?LSTT\.mask_token", "unused parameter of aot-benchmark main"),)


def official_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The weights inside an official checkpoint dict (``state_dict`` / ``model`` / raw)."""
    return extract_state_dict(checkpoint, candidates=("state_dict", "model"))


def to_project_keys(
    official: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename official keys; returns (state, skipped official keys with reasons)."""
    return convert_state_dict(official, rename=RENAME, skip=SKIP)


def load_official(network: AOT, official: Mapping[str, torch.Tensor], what: str) -> KeyReport:
    """Copy an official state dict into ``network``; any key mismatch raises
    :class:`~models.shared.checkpoint.KeyMismatchError` listing every offending key."""
    state, skipped = to_project_keys(official)
    encoder = getattr(network, "encoder", None)
    if isinstance(encoder, SwinEncoder):
        window = (1, encoder.window, encoder.window)
        try:
            derived = check_relative_position_index(state, "encoder.", windows=(window,))
        except ValueError as err:
            raise CheckpointError(f"{what}: {err}") from err
        for key in derived:
            del state[key]
            skipped[key] = "derived from the Swin window (checked, not loaded)"
    load_state_strict(network, state, what=what)
    return KeyReport(loaded=sorted(state), skipped=skipped)


def _stage_blocks(state: Mapping[str, torch.Tensor], stage: int) -> list[int]:
    pattern = re.compile(rf"^(?:module\.)?encoder\.layers\.{stage}\.blocks\.(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def complete_encoder_spec(spec: EngineSpec, official: Mapping[str, torch.Tensor]) -> EngineSpec:
    """Fill in the encoder size the checkpoint implies (Swin width / depths / heads / window,
    MobileNetV2 width), so that a window-7 and a window-12 Swin-L, say, both load.

    Only shapes are read; a checkpoint that fits no encoder of ``spec.encoder.kind`` is left to
    the strict load to report.
    """
    enc = spec.encoder
    get = {k.removeprefix("module."): v for k, v in official.items()}.get
    if enc.kind == "swin":
        embed = get("encoder.patch_embed.proj.weight")
        if embed is None:
            return spec
        depths, heads, window = [], [], enc.swin_window
        for stage in range(3):
            blocks = _stage_blocks(official, stage)
            if not blocks:
                return spec
            depths.append(len(blocks))
            table = get(f"encoder.layers.{stage}.blocks.0.attn.relative_position_bias_table")
            if table is None:
                return spec
            heads.append(int(table.shape[1]))
            window = (round(float(table.shape[0]) ** 0.5) + 1) // 2
        encoder = replace(
            enc,
            swin_embed_dim=int(embed.shape[0]),
            swin_depths=(*depths, enc.swin_depths[-1]),
            swin_heads=(*heads, enc.swin_heads[-1]),
            swin_window=window,
        )
        return replace(spec, encoder=encoder)
    if enc.kind == "resnet":
        stem = get("encoder.conv1.weight")
        if stem is None:
            return spec
        layers = tuple(
            len({int(m.group(1)) for k in official if (m := block.match(k))})
            for block in (
                re.compile(rf"^(?:module\.)?encoder\.layer{i}\.(\d+)\.") for i in (1, 2, 3)
            )
        )
        encoder = replace(enc, resnet_layers=layers, resnet_width=int(stem.shape[0]))
        return replace(spec, encoder=encoder)
    if enc.kind == "mobilenetv2":
        stem = get("encoder.features.0.0.weight")
        if stem is None:
            return spec
        for width in (1.0, 0.75, 0.5, 0.35, 1.4, 1.3, 0.25):
            if make_divisible(32 * width) == stem.shape[0]:
                return replace(spec, encoder=EncoderSpec("mobilenetv2", width_mult=width))
    return spec


def check_spec_matches(spec: EngineSpec, official: Mapping[str, torch.Tensor]) -> None:
    """Fail early, with a clear message, when a checkpoint is of another family or size."""
    keys = {k.removeprefix("module.") for k in official}
    is_deaot = "LSTT.layers.0.linear_QV.weight" in keys
    is_aot = "LSTT.layers.0.linear_Q.weight" in keys
    family = "deaot" if is_deaot else "aot" if is_aot else None
    if family is not None and family != spec.family:
        raise CheckpointError(
            f"checkpoint holds a {family.upper()} model but variant {spec.name!r} is "
            f"{spec.family.upper()}"
        )
    layers = {int(m.group(1)) for k in keys if (m := re.match(r"^LSTT\.layers\.(\d+)\.", k))}
    if layers and len(layers) != spec.num_layers:
        raise CheckpointError(
            f"checkpoint has {len(layers)} propagation layers, variant {spec.name!r} "
            f"has {spec.num_layers}"
        )
