"""MUTR's network from a :class:`models.family.config.FamilyConfig`.

The family's trunk (:func:`models.family.parts.trunk_arguments`) with the cross-modal FPN, the
MTA over the projected levels and the MTI video decoder (VITA with learned queries).
"""

from __future__ import annotations

from models.family import parts
from models.family.config import FamilyConfig
from models.mutr.model import MUTR
from models.mutr.mta import MultiScaleTextAggregator


def build_mutr(config: FamilyConfig) -> MUTR:
    """The MUTR ``config`` describes (random weights; load a checkpoint after)."""
    trunk = parts.trunk_arguments(config)
    fpn = parts.cross_modal_fpn(config, trunk["backbone"])
    mta = MultiScaleTextAggregator(
        config.d_model, config.nheads, config.mta_dim_feedforward, config.mta_layers
    )
    return MUTR(
        mask_decoder=fpn,
        mta=mta,
        video_decoder=parts.video_decoder(config, learned_init=True),
        **trunk,
    )
