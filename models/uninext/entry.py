"""UNINEXT's record in :mod:`models.build`: its network from a spec mapping or an official
checkpoint (``r50``, ``convnextl``, ``vith``, ``tiny``), strict loading, and
:class:`models.uninext.producer.UninextProducer` (options: ``short_side``, ``max_size``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from torch import nn

from models.common.producer import Producer
from models.common.producer_family import BuildError, ProducerFamily
from models.shared.checkpoint import extract_state_dict
from models.shared.typed import from_dict
from models.uninext import parity
from models.uninext.convert import load_official_weights
from models.uninext.model import UninextModel, build_uninext
from models.uninext.producer import UninextProducer
from models.uninext.spec import VARIANTS, UninextSpec, variant_spec

OPTIONS: tuple[str, ...] = ("short_side", "max_size")


def from_config(config: Mapping[str, Any], where: str) -> UninextModel:
    """The UNINEXT an :class:`UninextSpec` mapping describes, random weights."""
    return build_uninext(from_dict(UninextSpec, config, where=where))


def from_official(checkpoint: Mapping[str, object], variant: str, where: str) -> UninextModel:
    """The released UNINEXT of ``variant`` with an official checkpoint's weights (strict)."""
    try:
        spec = variant_spec(variant)
    except ValueError as err:
        raise BuildError(f"{where}: {err}") from err
    model = build_uninext(spec)
    load_official_weights(model, extract_state_dict(checkpoint, ("model",)), what=where)
    return model


def wrap(model: nn.Module, dataset: str, options: Mapping[str, Any]) -> Producer:
    """UNINEXT's protocol (the same on every dataset); ``short_side`` / ``max_size`` set the
    network's test size (``spec.min_size`` / ``spec.max_size``)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise BuildError(f"unknown UNINEXT producer options {sorted(unknown)}")
    if "short_side" in options:
        model.spec = replace(model.spec, min_size=int(options["short_side"]))
    if "max_size" in options:
        model.spec = replace(model.spec, max_size=int(options["max_size"]))
    return UninextProducer(model)  # type: ignore[arg-type]


FAMILY = ProducerFamily(
    name="uninext",
    tokenizer="bert-base-uncased",
    from_config=from_config,
    from_official=from_official,
    wrap=wrap,
    parity=parity,
    variants=tuple(sorted(VARIANTS)),
)
