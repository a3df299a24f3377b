"""Build a ready-to-run propagator from a variant name (or spec) and a state dict.

Files are the pipeline's business: it reads a checkpoint (``models.shared.checkpoint``) or a
project weights file (``pipeline.weights``) and hands the tensors here.

    propagator = build_propagator("r50_deaotl", official_state, device="cuda", autocast=True)
    propagator = build_propagator(spec_from_dict(meta["config"]), project_state)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from models.shared.checkpoint import KeyReport, load_state_strict
from vos.convert import check_spec_matches, complete_encoder_spec, load_official
from vos.deaot import build_network
from vos.session import Propagator
from vos.variants import EngineSpec, get_variant

_OFFICIAL_PREFIXES = ("LSTT.", "patch_wise_id_bank.", "module.")


def is_official_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """True for official aot-benchmark key names, False for the project's."""
    return any(k.startswith(_OFFICIAL_PREFIXES) for k in state)


def build_network_from_state(
    variant: str | EngineSpec, state: Mapping[str, torch.Tensor] | None
) -> tuple[torch.nn.Module, KeyReport | None]:
    """The network of ``variant`` with ``state`` loaded strictly (official or project keys);
    random weights when ``state`` is None."""
    spec = get_variant(variant) if isinstance(variant, str) else variant
    report = None
    if state is not None and is_official_layout(state):
        check_spec_matches(spec, state)
        spec = complete_encoder_spec(spec, state)
        network = build_network(spec)
        report = load_official(network, state, what=f"{spec.name} checkpoint")
    else:
        network = build_network(spec)
        if state is not None:
            load_state_strict(network, state, what=f"{spec.name} weights")
            report = KeyReport(loaded=sorted(state))
    return network.eval(), report


def build_propagator(
    variant: str | EngineSpec,
    state: Mapping[str, torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    **settings: Any,
) -> Propagator:
    """A :class:`~vos.session.Propagator` for ``variant`` on ``device``.

    ``settings`` are :class:`~vos.session.Propagator`'s keyword arguments (``long_term_gap``,
    ``long_term_cap``, ``tta``, ``resize``, ``mask_unused_ids``, ``autocast``, ...).
    """
    network, _ = build_network_from_state(variant, state)
    return Propagator(network.to(device), **settings)
