"""The producer-family record of a ReferFormer / MUTR / SOC leaf, written once for all three.

A leaf hands in its name, its network builder (``FamilyConfig -> network``), its official key
layout and its parity module; :func:`family_entry` returns the
:class:`models.common.producer_family.ProducerFamily` that :mod:`models.build` collects.
Official variants are the released Video-Swin sizes (``vswint``, ``vswins``, ``vswinb``); the
producer is :class:`models.family.producer.FamilyProducer` with the leaf's official protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import torch

from models.common.producer import Producer
from models.common.producer_family import DATASET_NAMES, BuildError, ProducerFamily
from models.family.config import FamilyConfig, released_config
from models.family.convert import CheckpointLayout, load_official
from models.family.model import ReferFormer
from models.family.producer import FamilyProducer, protocol_for
from models.shared.typed import from_dict

SWIN_SIZES: dict[str, str] = {"vswint": "tiny", "vswins": "small", "vswinb": "base"}
HF_TOKENIZER = "roberta-base"


def family_entry(
    name: str,
    build: Callable[[FamilyConfig], ReferFormer],
    layout: CheckpointLayout,
    parity: ModuleType | None = None,
) -> ProducerFamily:
    """The record of the leaf ``name`` (``referformer``, ``mutr`` or ``soc``).

    Args:
        build: the leaf's network from a :class:`FamilyConfig` (random weights).
        layout: how the leaf's official checkpoints name their keys.
        parity: the leaf's parity module.
    """

    def from_config(config: Mapping[str, Any], where: str) -> ReferFormer:
        family_config = from_dict(FamilyConfig, config, where=where)
        if family_config.model != name:
            raise BuildError(f"{where}: holds a {family_config.model} config, not {name}")
        return build(family_config)

    def from_official(checkpoint: Mapping[str, object], variant: str, where: str) -> ReferFormer:
        if variant not in SWIN_SIZES:
            raise BuildError(
                f"{where}: {name} variant must be one of {sorted(SWIN_SIZES)}, not {variant!r}"
            )
        model = build(released_config(name, SWIN_SIZES[variant]))
        load_official(model, checkpoint, layout)
        return model

    def wrap(model: torch.nn.Module, dataset: str, options: Mapping[str, Any]) -> Producer:
        protocol = protocol_for(name, DATASET_NAMES[dataset], **options)
        return FamilyProducer(model, protocol)  # type: ignore[arg-type]

    return ProducerFamily(
        name=name,
        tokenizer=HF_TOKENIZER,
        from_config=from_config,
        from_official=from_official,
        wrap=wrap,
        parity=parity,
        variants=tuple(sorted(SWIN_SIZES)),
    )
