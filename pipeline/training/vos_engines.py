"""Engine files of ``lsvos train-vos``: read a project weights file that holds an AOT / DeAOT
or Cutie engine, build its propagator (:func:`vos.build.build_engine`), or take its spec and
weights as a training starting point (``--init``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import torch

from models.shared.typed import from_dict
from pipeline.adapters.weights import ProjectWeights, inference_scales, load_project_weights
from pipeline.core.errors import InputFileError, UserError
from pipeline.training.runs import split_history
from vos.build import (
    EngineBuildError,
    EngineWeights,
    PropagatorOptions,
    build_engine,
)
from vos.cutie.engine import CUTIE_FAMILY
from vos.cutie.spec import TRAINABLE_VARIANTS, CutieSpec
from vos.session import Propagator
from vos.variants import EngineSpec, get_variant, spec_from_dict

TRAINABLE_FAMILIES = ("aot", "deaot", CUTIE_FAMILY)  # what lsvos train-vos trains
TrainableSpec = EngineSpec | CutieSpec


def engine_weights(path: Path) -> ProjectWeights:
    """A project weights file that holds an AOT / DeAOT / Cutie engine (else an error naming
    it)."""
    weights = load_project_weights(path)
    if weights.family not in TRAINABLE_FAMILIES:
        raise InputFileError(
            f"{path} holds a {weights.family!r} model, not an AOT / DeAOT / Cutie engine"
        )
    return weights


def cutie_spec_from_config(config: dict[str, object], where: str) -> CutieSpec:
    """A Cutie engine file's ``lsvos.config`` -> its :class:`~vos.cutie.spec.CutieSpec`."""
    fields = {k: v for k, v in config.items() if k != "family"}
    try:
        return from_dict(CutieSpec, fields, where=where)
    except (TypeError, ValueError) as err:  # typed.UnknownFieldError is a ValueError
        raise InputFileError(f"{where}: bad Cutie config: {err}") from err


def load_engine(path: Path, options: PropagatorOptions | None = None) -> Propagator:
    """The propagator of an engine file written by ``lsvos train-vos`` (default options: the
    test-time scales the file records, everything else :class:`vos.build.PropagatorOptions`'
    defaults)."""
    weights = engine_weights(path)
    options = options or PropagatorOptions(scales=inference_scales(weights))
    project = EngineWeights.project(weights.state, weights.config, where=str(path))
    try:
        engine = build_engine(weights.family, project, options)
    except EngineBuildError as err:
        raise UserError(str(err)) from err
    return cast(Propagator, engine)


@dataclass(frozen=True)
class StartingPoint:
    """What a training run starts from.

    Attributes:
        spec: the engine to train.
        state: weights to initialise it with (None: random).
        history: the commands that trained ``state`` (``--init``'s ``lsvos.trained_with``).
        source: the file ``state`` came from.
    """

    spec: TrainableSpec
    state: dict[str, torch.Tensor] | None = None
    history: tuple[str, ...] = ()
    source: Path | None = None


def initial_engine(path: Path) -> StartingPoint:
    """An engine file's spec (AOT / DeAOT: its notes cleared), weights and training history
    (``--init``)."""
    weights = engine_weights(path)
    spec: TrainableSpec
    if weights.family == CUTIE_FAMILY:
        spec = cutie_spec_from_config(dict(weights.config), str(path))
    else:
        spec = replace(spec_from_dict(weights.config), notes="")
    history = split_history(weights.metadata.get("lsvos.trained_with", ""))
    return StartingPoint(spec, weights.state, tuple(history), path)


def starting_point(model: str, layers: int | None, init: Path | None) -> StartingPoint:
    """``--init``'s engine, else the variant ``model`` (with ``layers`` propagation layers -
    Cutie: object-transformer blocks - when given); Swin-encoder engines are refused
    (train-vos trains CNN encoders)."""
    if init is not None:
        return _trainable(initial_engine(init))
    spec: TrainableSpec
    if model in TRAINABLE_VARIANTS:
        spec = TRAINABLE_VARIANTS[model]
        if layers is not None:
            spec = replace(spec, num_blocks=layers)
    else:
        try:
            spec = get_variant(model)
        except KeyError as err:
            known = ", ".join(sorted(TRAINABLE_VARIANTS))
            raise UserError(f"{err.args[0]} (Cutie: {known})") from err
        if layers is not None:
            spec = replace(spec, num_layers=layers)
    return _trainable(StartingPoint(spec))


def _trainable(start: StartingPoint) -> StartingPoint:
    """``start``, unless its engine has a Swin encoder (an error naming it)."""
    if isinstance(start.spec, EngineSpec) and start.spec.encoder.kind == "swin":
        raise UserError(
            f"train-vos trains CNN-encoder engines from scratch; {start.spec.name} is Swin"
        )
    return start
