"""What :mod:`models.build` needs from one producer family: a plain record of functions.

Each family (``models/<family>/entry.py``) fills one :class:`ProducerFamily`; the functions
take already-read data (a checkpoint dict, a config mapping and tensors) and a ``where`` that
names the file in errors. :class:`BuildError` lives here so that a family can raise it without
importing :mod:`models.build`, which imports every family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch import nn

from models.common.producer import Producer

# The dataset names of the families' protocol tables.
DATASET_NAMES: dict[str, str] = {
    "ytvos": "ref-youtube-vos",
    "davis": "ref-davis17",
    "mevis": "mevis",
}


class BuildError(ValueError):
    """A producer cannot be built as asked (unknown family, variant or options); the message
    names the weights file (``where``)."""


@dataclass(frozen=True)
class ProducerFamily:
    """How to build, load and run one family's network.

    Attributes:
        name: the family (``sgmg``, ``referformer``, ...).
        tokenizer: the Hugging Face tokenizer its text encoder was trained with.
        from_config: (config mapping, where) -> the network with random weights; a project
            weights file is this network with its tensors loaded strictly (:mod:`models.build`).
        from_official: (official checkpoint dict, variant, where) -> the network, loaded strictly.
        wrap: (network, dataset ``ytvos`` / ``davis`` / ``mevis``, options) -> its producer
            running the family's inference protocol with ``options`` overriding it.
        parity: the family's parity module (``run_parity`` / ``convert_parity``), if any.
        variants: the released variants ``from_official`` builds (checked before any load).
    """

    name: str
    tokenizer: str
    from_config: Callable[[Mapping[str, Any], str], nn.Module]
    from_official: Callable[[Mapping[str, object], str, str], nn.Module]
    wrap: Callable[[nn.Module, str, Mapping[str, Any]], Producer]
    parity: ModuleType | None = None
    variants: tuple[str, ...] = ()
