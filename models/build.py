"""The one entry point that builds an RVOS producer: a family name and typed weights in, a
:class:`models.common.producer.Producer` out.

Weights arrive already read: :class:`OfficialWeights` (an official checkpoint's content and
its variant, e.g. ``vswinb``) or :class:`ProjectWeights` (a project weights file's config and
tensors). Each family fills one :class:`models.common.producer_family.ProducerFamily` in its own
package (``models/<family>/entry.py``); :data:`FAMILIES` collects them.

Example::

    from models.build import OfficialWeights, build_producer
    from models.shared.checkpoint import read_checkpoint

    weights = OfficialWeights(read_checkpoint(path), "vswinb", str(path))
    producer = build_producer("mutr", weights, dataset="ytvos", options={"short_side": 360})
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.common.producer import ExpressionResult, Producer, TokenizedText
from models.common.producer_family import DATASET_NAMES, BuildError, ProducerFamily
from models.mutr.entry import FAMILY as MUTR
from models.referformer.entry import FAMILY as REFERFORMER
from models.sgmg.entry import FAMILY as SGMG
from models.shared.checkpoint import load_state_strict
from models.soc.entry import FAMILY as SOC
from models.uninext.entry import FAMILY as UNINEXT

__all__ = [
    "FAMILIES",
    "PRECISIONS",
    "PRODUCER_FAMILIES",
    "AutocastProducer",
    "BuildError",
    "OfficialWeights",
    "ProjectWeights",
    "build_network",
    "build_producer",
    "family",
    "network_from_config",
    "tokenizer_name",
    "with_precision",
]

FAMILIES: dict[str, ProducerFamily] = {f.name: f for f in (SGMG, REFERFORMER, MUTR, SOC, UNINEXT)}
PRODUCER_FAMILIES: tuple[str, ...] = tuple(FAMILIES)
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class OfficialWeights:
    """An official checkpoint already read into memory.

    Attributes:
        checkpoint: the file's content (``{'model': state_dict, ...}`` or a bare state dict).
        variant: the released network it belongs to (``vswint``, ``vswinb``, ``r50``, ...).
        where: the file, for errors.
    """

    checkpoint: Mapping[str, object]
    variant: str
    where: str


@dataclass(frozen=True)
class ProjectWeights:
    """A project weights file's network config and tensors.

    Attributes:
        config: the family's config as plain data (``lsvos.config``).
        state: the port's state dict.
        where: the file, for errors.
    """

    config: Mapping[str, Any]
    state: Mapping[str, torch.Tensor]
    where: str


Weights = OfficialWeights | ProjectWeights


def family(name: str, where: str = "producer") -> ProducerFamily:
    """The record of the family ``name``; :class:`BuildError` naming ``where`` if unknown."""
    if name not in FAMILIES:
        raise BuildError(
            f"{where}: unknown producer family {name!r}; known: {list(PRODUCER_FAMILIES)}"
        )
    return FAMILIES[name]


def variant_problem(name: str, variant: str) -> str | None:
    """Why ``variant`` is not a released variant of family ``name`` (None: it is), found without
    reading any weights; an unknown family raises :class:`BuildError`."""
    known = family(name).variants
    if str(variant) in known:
        return None
    return f"{name} variant must be one of {list(known)}, not {str(variant)!r}"


def tokenizer_name(name: str) -> str:
    """The Hugging Face tokenizer of the family's text encoder (``roberta-base``,
    ``bert-base-uncased`` for UNINEXT)."""
    return family(name).tokenizer


def network_from_config(name: str, config: Mapping[str, Any], where: str = "config") -> nn.Module:
    """The family's network for a config mapping, with random weights (training from scratch)."""
    return family(name, where).from_config(config, where)


def build_network(name: str, weights: Weights) -> nn.Module:
    """The family's network built for ``weights`` and loaded strictly, in eval mode."""
    record = family(name, weights.where)
    if isinstance(weights, OfficialWeights):
        network = record.from_official(weights.checkpoint, weights.variant, weights.where)
    else:
        network = record.from_config(weights.config, weights.where)
        load_state_strict(network, weights.state, what=weights.where)
    return network.eval()


def build_producer(
    name: str,
    weights: Weights,
    *,
    dataset: str,
    options: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> Producer:
    """The family's producer: the network of :func:`build_network` on ``device``, wrapped with
    the family's inference protocol on ``dataset`` (``ytvos``, ``davis`` or ``mevis``) with
    ``options`` overriding it, under CUDA autocast for ``fp16`` / ``bf16`` on a CUDA device."""
    record = family(name, weights.where)
    if dataset not in DATASET_NAMES:
        raise BuildError(
            f"{weights.where}: unknown dataset {dataset!r}; known: {sorted(DATASET_NAMES)}"
        )
    device = torch.device(device)
    network = build_network(name, weights).to(device).eval()
    try:
        producer = record.wrap(network, dataset, dict(options or {}))
    except ValueError as err:
        raise BuildError(f"{weights.where}: {err}") from err
    return with_precision(producer, precision, device)


class AutocastProducer:
    """Runs a producer's forward passes under CUDA autocast (fp16 / bf16)."""

    def __init__(self, inner: Producer, dtype: torch.dtype) -> None:
        self.inner = inner
        self.dtype = dtype

    def segment_video(
        self, frames: torch.Tensor, text: TokenizedText
    ) -> Iterator[ExpressionResult]:
        """The inner producer's results (same contract), computed under autocast."""
        with torch.autocast("cuda", dtype=self.dtype):
            yield from self.inner.segment_video(frames, text)


def with_precision(producer: Producer, precision: str, device: torch.device) -> Producer:
    """``producer`` itself for ``fp32`` or off CUDA, else wrapped in :class:`AutocastProducer`."""
    if precision not in PRECISIONS:
        raise BuildError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None or device.type != "cuda":
        return producer
    return AutocastProducer(producer, dtype)  # type: ignore[return-value]
