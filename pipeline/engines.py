"""Propagation engines as plugins: build a :class:`vos.session.Propagator` from an engine config
and check engine configs before a run.

An engine config names the ``family`` (``aot`` / ``deaot``), the ``variant`` (official names such
as ``swinl_aotl``, ``r50_deaotl``; or ``tiny`` with a project weights file), the ``checkpoint``
(an official aot-benchmark file, or a project weights file), device and precision, and the
protocol: TTA scales and flip, long-term gap and cap, resize cap, memory update, reset between
passes, expression packing. ``scales: null`` takes the test-time scales a project weights file
records (``lsvos train-vos --scale``), else 1.0.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from models.shared.checkpoint import read_checkpoint
from models.shared.typed import from_dict
from pipeline.errors import UserError
from pipeline.weights import inference_scales, is_project_weights, load_project_weights

ENGINE_FAMILIES = ("aot", "deaot")
_LOCK = threading.Lock()
_PROPAGATORS: dict[str, Any] = {}


def engine_problems(where: str, settings: Mapping[str, Any]) -> list[str]:
    """What would stop this engine from running (missing file, unknown family or variant)."""
    problems = []
    family = settings.get("family")
    if family not in ENGINE_FAMILIES:
        problems.append(
            f"{where}.family: unknown engine family {family!r}; known: {ENGINE_FAMILIES}"
        )
    checkpoint = settings.get("checkpoint")
    if not checkpoint or not Path(checkpoint).is_file():
        problems.append(f"{where}.checkpoint: file not found: {checkpoint}")
    elif not is_project_weights(checkpoint):
        from vos.variants import get_variant

        try:
            get_variant(str(settings.get("variant")))
        except KeyError as err:
            problems.append(f"{where}.variant: {err.args[0]}")
    return problems


def get_propagator(settings: Mapping[str, Any]) -> Any:
    """The propagator for ``settings`` (built once per process)."""
    key = json.dumps(dict(settings), sort_keys=True, default=str)
    with _LOCK:
        if key not in _PROPAGATORS:
            _PROPAGATORS[key] = build_propagator(settings)
        return _PROPAGATORS[key]


def build_propagator(settings: Mapping[str, Any]) -> Any:
    """Read the checkpoint, build and strictly load the network, wrap it with its settings."""
    from vos.convert import (
        check_spec_matches,
        complete_encoder_spec,
        load_official,
        official_state_dict,
    )
    from vos.deaot import build_network
    from vos.preprocess import ResizeRule
    from vos.session import Propagator, TTAConfig
    from vos.variants import EngineSpec, get_variant

    path = Path(settings["checkpoint"])
    family = settings["family"]
    scales = settings.get("scales")
    if is_project_weights(path):
        weights = load_project_weights(path)
        if scales is None:
            scales = inference_scales(weights)
        if weights.family != family:
            raise UserError(f"{path} holds {weights.family} weights, not {family}")
        spec = from_dict(EngineSpec, weights.config, where=str(path))
        network = build_network(spec)
        from models.shared.checkpoint import load_state_strict

        load_state_strict(network, weights.state, what=str(path))
    else:
        try:
            spec = get_variant(str(settings["variant"]))
        except KeyError as err:
            raise UserError(str(err.args[0])) from err
        official = official_state_dict(read_checkpoint(path))
        spec = complete_encoder_spec(spec, official)
        check_spec_matches(spec, official)
        network = build_network(spec)
        load_official(network, official, what=str(path))
    if spec.family != family:
        raise UserError(f"{path}: a {spec.family} network, but the engine config says {family}")
    device = torch.device(settings.get("device") or "cpu")
    precision = settings.get("precision") or "fp32"
    if precision not in ("fp32", "fp16"):
        raise UserError(f"engine precision must be fp32 or fp16, not {precision!r}")
    tta = TTAConfig(
        scales=tuple(float(s) for s in scales or (1.0,)),
        flip=bool(settings.get("flip")),
        memory_update="ensemble" if settings.get("ensemble_memory_update", True) else "own",
    )
    return Propagator(
        network.to(device),
        long_term_gap=settings.get("long_term_gap"),
        long_term_cap=settings.get("max_long_term"),
        tta=tta,
        resize=ResizeRule(max_long_edge=settings.get("max_long_edge")),
        mask_unused_ids=bool(settings.get("mask_unused_ids", True)),
        autocast=precision == "fp16",
    )


def protocol_config(settings: Mapping[str, Any]) -> Any:
    """The challenge protocol options of an engine config."""
    from vos.protocol import ProtocolConfig

    return ProtocolConfig(
        mode="fresh" if settings.get("reset_between_passes") else "faithful",
        batch_expressions=bool(settings.get("pack_expressions", True)),
    )
