"""ReferFormer's network from a :class:`models.family.config.FamilyConfig`.

The family's trunk (:func:`models.family.parts.trunk_arguments`) with the cross-modal FPN as
its mask decoder; ReferFormer itself is the family's base network
(:class:`models.family.model.ReferFormer`).
"""

from __future__ import annotations

from models.family import parts
from models.family.config import FamilyConfig
from models.family.model import ReferFormer


def build_referformer(config: FamilyConfig) -> ReferFormer:
    """The ReferFormer ``config`` describes (random weights; load a checkpoint after)."""
    trunk = parts.trunk_arguments(config)
    fpn = parts.cross_modal_fpn(config, trunk["backbone"])
    return ReferFormer(mask_decoder=fpn, **trunk)
