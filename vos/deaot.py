"""DeAOT: decoupled visual / ID propagation (aot-benchmark ``networks/models/deaot.py``).

Same pipeline and stage methods as :class:`vos.aot.AOT`; the propagation is the dual-branch
gated propagation (:class:`vos.layers.gpm.DualBranchGPM`), the identity embedding gets a
LayerNorm (``id_norm``) and the decoder reads the last layer's 512-channel output only.
"""

from __future__ import annotations

import torch
from torch import nn

from vos.aot import AOT
from vos.layers.basic import map_to_tokens
from vos.layers.gpm import DualBranchGPM
from vos.variants import EngineSpec


class DeAOT(AOT):
    """The DeAOT network for one :class:`~vos.variants.EngineSpec` (``family == "deaot"``)."""

    def __init__(self, spec: EngineSpec, *, trainable_norm: bool = False) -> None:
        super().__init__(spec, trainable_norm=trainable_norm)
        self.id_norm = nn.LayerNorm(spec.d_model)

    def _build_propagation(self, spec: EngineSpec) -> nn.Module:
        return DualBranchGPM(
            spec.num_layers,
            spec.d_model,
            spec.self_heads,
            spec.att_heads,
            droppath=spec.droppath,
            intermediate_norm=spec.decoder_intermediate,
            max_dis=spec.max_dis,
        )

    def _decoder_in_dim(self, spec: EngineSpec) -> int:
        if spec.decoder_intermediate:
            return spec.d_model * (spec.num_layers * 2 + 1)
        return spec.d_model * 2

    def id_embedding(self, one_hot: torch.Tensor) -> torch.Tensor:
        return self.id_norm(map_to_tokens(self.id_bank(one_hot)))


def build_network(spec: EngineSpec, *, trainable_norm: bool = False) -> AOT:
    """An untrained AOT or DeAOT network for ``spec`` (``trainable_norm``: BatchNorm2d in a CNN
    encoder instead of the frozen one, for training from scratch)."""
    cls = DeAOT if spec.family == "deaot" else AOT
    return cls(spec, trainable_norm=trainable_norm)
