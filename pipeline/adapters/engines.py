"""Propagation engines for the pipeline: an engine config -> :func:`vos.build.build_engine`.

An engine config names the ``family`` (``aot`` / ``deaot``; :data:`vos.build.ENGINES`), the
``variant`` (official names such as ``swinl_aotl``, ``r50_deaotl``; or ``tiny`` with a project
weights file), the ``checkpoint`` (an official aot-benchmark file, or a project weights file),
device and precision, and the protocol: TTA scales and flip, long-term gap and cap, resize cap,
memory update, unused-identity masking, the backward pass's memory rule, reset between passes,
expression packing. ``scales: null`` takes the test-time scales a project weights file records
(``lsvos train-vos --scale``), else 1.0.

This module only reads the file and maps the config's fields onto :class:`vos.build.
EngineWeights` and :class:`vos.build.PropagatorOptions`; what an engine is lives in ``vos/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from models.shared.checkpoint import CheckpointError, read_checkpoint
from pipeline.adapters.build_cache import BuildCache
from pipeline.adapters.weights import (
    checkpoint_problem,
    checkpoint_user_error,
    inference_scales,
    is_project_weights,
    load_project_weights,
)
from pipeline.core.errors import UserError
from vos.build import (
    ENGINE_FAMILIES,
    EngineBuildError,
    EngineWeights,
    PropagatorOptions,
    build_engine,
    variant_problem,
)
from vos.engine import PropagationEngine

if TYPE_CHECKING:  # the schema's types; adapters import nothing of the orchestration
    from pipeline.orchestration.config import EngineConfig
    from vos.protocol import ProtocolConfig

_PROPAGATORS: BuildCache[PropagationEngine] = BuildCache()


def engine_problems(where: str, settings: EngineConfig) -> list[str]:
    """What would stop this engine from running (missing file, unknown family or variant)."""
    problems = []
    family = settings.family
    known = family in ENGINE_FAMILIES
    if not known:
        problems.append(
            f"{where}.family: unknown engine family {family!r}; known: {ENGINE_FAMILIES}"
        )
    checkpoint = settings.checkpoint
    exists = bool(checkpoint) and Path(checkpoint).is_file()
    unreadable = None
    if not exists:
        problems.append(f"{where}.checkpoint: file not found: {checkpoint}")
    else:
        unreadable = checkpoint_problem(f"{where}.checkpoint", checkpoint)
        if unreadable is not None:
            problems.append(unreadable)
    # an official file names its network by the variant (a project weights file carries its own)
    official = not str(checkpoint).endswith(".safetensors") or (
        exists and unreadable is None and not is_project_weights(checkpoint)
    )
    if known and official:
        problem = variant_problem(family, str(settings.variant))
        if problem is not None:
            problems.append(f"{where}.variant: {problem}")
    return problems


def get_propagator(settings: EngineConfig) -> PropagationEngine:
    """The engine for ``settings`` (built once per process)."""
    key = json.dumps(asdict(settings), sort_keys=True, default=str)
    return _PROPAGATORS.get(key, settings.checkpoint, lambda: engine_from_config(settings))


def engine_from_config(settings: EngineConfig) -> PropagationEngine:
    """Read the checkpoint and build its engine with the config's settings (a new one per
    call; :func:`get_propagator` caches)."""
    path = Path(settings.checkpoint)
    family = str(settings.family)
    recorded = None
    if is_project_weights(path):
        project = load_project_weights(path)
        if settings.scales is None:
            recorded = inference_scales(project)
        if project.family != family:
            raise UserError(f"{path} holds {project.family} weights, not {family}")
        weights = EngineWeights.project(project.state, project.config, where=str(path))
    else:
        problem = variant_problem(family, str(settings.variant))
        if problem is not None:  # before reading a (large) checkpoint
            raise UserError(problem)
        try:
            state = read_checkpoint(path)
        except CheckpointError as err:
            raise checkpoint_user_error(path, err) from err
        weights = EngineWeights.official(state, str(settings.variant), where=str(path))
    try:
        return build_engine(family, weights, propagator_options(settings, recorded))
    except EngineBuildError as err:
        raise UserError(str(err)) from err
    except CheckpointError as err:  # keys that do not fit the network
        raise checkpoint_user_error(path, err) from err


def propagator_options(
    settings: EngineConfig, recorded_scales: tuple[float, ...] | None = None
) -> PropagatorOptions:
    """The engine config's propagator settings; ``scales: null`` takes ``recorded_scales`` (a
    project weights file's), else 1.0."""
    scales = settings.scales if settings.scales is not None else recorded_scales
    try:
        return PropagatorOptions(
            scales=tuple(float(s) for s in scales or (1.0,)),
            flip=bool(settings.flip),
            memory_update="ensemble" if settings.ensemble_memory_update else "own",
            long_term_gap=settings.long_term_gap,
            long_term_cap=settings.max_long_term,
            max_long_edge=settings.max_long_edge,
            mask_unused_ids=bool(settings.mask_unused_ids),
            backward_memory=str(settings.backward_memory),  # type: ignore[arg-type]
            precision=str(settings.precision),  # type: ignore[arg-type]
            device=settings.device or "cpu",
        )
    except EngineBuildError as err:
        raise UserError(str(err)) from err


def protocol_config(settings: EngineConfig) -> ProtocolConfig:
    """The challenge protocol options of an engine config."""
    from vos.protocol import ProtocolConfig

    return ProtocolConfig(
        mode="fresh" if settings.reset_between_passes else "faithful",
        batch_expressions=bool(settings.pack_expressions),
    )
