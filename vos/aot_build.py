"""The AOT / DeAOT builder of :data:`vos.build.ENGINES`: weights -> spec -> network ->
:class:`vos.session.Propagator`.

Official layout: the checkpoint's state dict (:func:`vos.convert.official_state_dict`), the
variant's spec completed with the encoder size the tensors imply
(:func:`vos.convert.complete_encoder_spec`), checked against them
(:func:`vos.convert.check_spec_matches`), then the network loaded with the official key map
(:func:`vos.convert.load_official`). Project layout: the spec from its mapping, then a strict
load of the project's key names.
"""

from __future__ import annotations

import torch

from models.shared.checkpoint import load_state_strict
from models.shared.typed import from_dict
from vos.aot import AOT
from vos.convert import (
    check_spec_matches,
    complete_encoder_spec,
    load_official,
    official_state_dict,
)
from vos.deaot import build_network
from vos.engine_inputs import EngineBuildError, EngineWeights, PropagatorOptions
from vos.preprocess import ResizeRule
from vos.session import Propagator, TTAConfig
from vos.variants import EngineSpec, get_variant


def _official_network(family: str, weights: EngineWeights) -> AOT:
    try:
        spec = get_variant(weights.variant)
    except KeyError as err:
        raise EngineBuildError(f"{weights.where}: {err.args[0]}") from err
    official = official_state_dict(weights.state)
    spec = complete_encoder_spec(spec, official)
    check_spec_matches(spec, official)
    _check_family(spec, family, weights.where)
    network = build_network(spec)
    load_official(network, official, what=weights.where)
    return network


def _project_network(family: str, weights: EngineWeights) -> AOT:
    assert weights.config is not None  # EngineWeights refuses project weights without one
    spec = from_dict(EngineSpec, weights.config, where=weights.where)
    _check_family(spec, family, weights.where)
    network = build_network(spec)
    load_state_strict(network, weights.state, what=weights.where)
    return network


def _check_family(spec: EngineSpec, family: str, where: str) -> None:
    if spec.family != family:
        raise EngineBuildError(
            f"{where}: a {spec.family} network, but the engine config says {family}"
        )


def build_aot_engine(family: str, weights: EngineWeights, options: PropagatorOptions) -> Propagator:
    """A :class:`~vos.session.Propagator` of ``family`` (``aot`` / ``deaot``) on
    ``options.device``, its network in eval mode with ``weights`` loaded strictly."""
    if weights.layout == "official":
        network = _official_network(family, weights)
    else:
        network = _project_network(family, weights)
    tta = TTAConfig(scales=options.scales, flip=options.flip, memory_update=options.memory_update)
    return Propagator(
        network.to(torch.device(options.device)),
        long_term_gap=options.long_term_gap,
        short_term_skip=options.short_term_skip,
        long_term_cap=options.long_term_cap,
        tta=tta,
        resize=ResizeRule(max_long_edge=options.max_long_edge),
        mask_unused_ids=options.mask_unused_ids,
        backward_memory=options.backward_memory,
        autocast=options.autocast,
    )
