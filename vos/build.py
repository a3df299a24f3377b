"""The one builder of propagation engines: a family, its weights and the propagator options ->
a ready-to-run :class:`vos.engine.PropagationEngine`.

Files are the pipeline's business: it reads a checkpoint (``models.shared.checkpoint``) or a
project weights file (``pipeline.adapters.weights``) and hands the tensors here, saying which
layout they are in:

    weights = EngineWeights.official(checkpoint, "r50_deaotl", where="ckpt/R50_DeAOTL.pth")
    engine = build_engine("deaot", weights, PropagatorOptions(scales=(0.8, 1.0, 1.2), flip=True))
    engine = build_engine("aot", EngineWeights.project(state, config, where="aot.safetensors"))

Every family is one :class:`EngineRecord` of :data:`ENGINES`. A new engine (SAM 2, Cutie) is a
module whose builder returns an object satisfying :mod:`vos.engine`'s protocol, plus one line
in :data:`ENGINES`; :mod:`vos.protocol` and the pipeline stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import vos.cutie.parity
import vos.parity
import vos.sam2.parity
from vos.aot_build import build_aot_engine
from vos.cutie.engine import build_cutie_engine, cutie_variant_problem
from vos.engine import PropagationEngine
from vos.engine_inputs import (
    BACKWARD_MEMORIES,
    LAYOUTS,
    MEMORY_UPDATES,
    PRECISIONS,
    BackwardMemory,
    EngineBuildError,
    EngineWeights,
    Layout,
    MemoryUpdate,
    Precision,
    PropagatorOptions,
)
from vos.sam2.engine import build_sam2_engine, sam2_variant_problem

__all__ = [
    "BACKWARD_MEMORIES",
    "ENGINES",
    "ENGINE_FAMILIES",
    "LAYOUTS",
    "MEMORY_UPDATES",
    "PRECISIONS",
    "BackwardMemory",
    "EngineBuildError",
    "EngineBuilder",
    "EngineRecord",
    "EngineWeights",
    "Layout",
    "MemoryUpdate",
    "Precision",
    "PropagatorOptions",
    "build_engine",
    "variant_problem",
]

EngineBuilder = Callable[[str, EngineWeights, PropagatorOptions], PropagationEngine]
VariantCheck = Callable[[str], str | None]


@dataclass(frozen=True)
class EngineRecord:
    """One engine family of the registry.

    Attributes:
        family: the name engine configs use.
        build: ``(family, weights, options) -> engine``; raises :class:`EngineBuildError`.
        variant_problem: why a variant name is unknown to the family (None: it is known).
        summary: one line for listings.
        parity: the family's parity module (``run_parity`` / ``convert_parity``).
    """

    family: str
    build: EngineBuilder
    variant_problem: VariantCheck
    summary: str
    parity: ModuleType | None = None


def _aot_variant_problem(variant: str) -> str | None:
    from vos.variants import get_variant

    try:
        get_variant(variant)
    except KeyError as err:
        return str(err.args[0])
    return None


ENGINES: dict[str, EngineRecord] = {
    "aot": EngineRecord(
        "aot", build_aot_engine, _aot_variant_problem, "AOT (LSTT), aot-benchmark", vos.parity
    ),
    "deaot": EngineRecord(
        "deaot",
        build_aot_engine,
        _aot_variant_problem,
        "DeAOT (gated propagation), aot-benchmark",
        vos.parity,
    ),
    "cutie": EngineRecord(
        "cutie",
        build_cutie_engine,
        cutie_variant_problem,
        "Cutie (object-level memory reading), hkchengrex/Cutie",
        vos.cutie.parity,
    ),
    "sam2": EngineRecord(
        "sam2",
        build_sam2_engine,
        sam2_variant_problem,
        "SAM 2 / SAM 2.1 (Hiera, memory attention), facebookresearch/sam2",
        vos.sam2.parity,
    ),
}
ENGINE_FAMILIES: tuple[str, ...] = tuple(ENGINES)


def _record(family: str, where: str) -> EngineRecord:
    record = ENGINES.get(str(family))
    if record is None:
        raise EngineBuildError(
            f"{where}: unknown engine family {family!r}; known: {ENGINE_FAMILIES}"
        )
    return record


def variant_problem(family: str, variant: str) -> str | None:
    """Why ``variant`` is not a variant of ``family`` (None: it is); an unknown family raises
    :class:`EngineBuildError`."""
    return _record(family, "engine").variant_problem(str(variant))


def build_engine(
    family: str, weights: EngineWeights, options: PropagatorOptions | None = None
) -> PropagationEngine:
    """The engine of ``family`` with ``weights`` loaded strictly, running with ``options``.

    Raises:
        EngineBuildError: unknown family or variant, or weights of another family (the
            message names ``weights.where``).
        models.shared.checkpoint.CheckpointError: keys that do not fit the network.
    """
    record = _record(family, weights.where)
    return record.build(str(family), weights, options or PropagatorOptions())
