"""SgMg's record in :mod:`models.build`: its network from a config or an official checkpoint
(``vswint`` / ``vswinb``), strict loading, and :class:`models.sgmg.producer.SgMgProducer` with
the dataset's official protocol (``options`` override its fields)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from models.common.producer import Producer
from models.common.producer_family import BuildError, ProducerFamily
from models.sgmg import parity
from models.sgmg.build import PRESETS, SgMgConfig, build_sgmg
from models.sgmg.convert import load_official
from models.sgmg.producer import PROTOCOLS, SgMgProducer
from models.shared.typed import from_dict, replace_fields

VARIANT_PRESETS: dict[str, str] = {"vswint": "video_swin_t", "vswinb": "video_swin_b"}


def from_config(config: Mapping[str, Any], where: str) -> nn.Module:
    """The SgMg (or multi-object SgMg) an :class:`SgMgConfig` mapping describes, random weights."""
    return build_sgmg(from_dict(SgMgConfig, config, where=where))


def from_official(checkpoint: Mapping[str, object], variant: str, where: str) -> nn.Module:
    """The released SgMg of ``variant`` with an official checkpoint's weights (strict)."""
    if variant not in VARIANT_PRESETS:
        raise BuildError(
            f"{where}: SgMg variant must be one of {sorted(VARIANT_PRESETS)}, not {variant!r}"
        )
    model = build_sgmg(PRESETS[VARIANT_PRESETS[variant]])
    load_official(model, checkpoint)
    return model


def wrap(model: nn.Module, dataset: str, options: Mapping[str, Any]) -> Producer:
    """SgMg's protocol on ``dataset`` (``ytvos`` / ``davis`` / ``mevis``), ``options`` applied."""
    protocol = replace_fields(PROTOCOLS[dataset], options, where="SgMg protocol options")
    return SgMgProducer(model, protocol)  # type: ignore[arg-type]


FAMILY = ProducerFamily(
    name="sgmg",
    tokenizer="roberta-base",
    from_config=from_config,
    from_official=from_official,
    wrap=wrap,
    parity=parity,
    variants=tuple(sorted(VARIANT_PRESETS)),
)
