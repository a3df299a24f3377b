"""SOC's network from a :class:`models.family.config.FamilyConfig`.

The family's trunk (:func:`models.family.parts.trunk_arguments`) with MTTR's FPN spatial
decoder (``mask_dim`` channels at stride 4) and the VOC video decoder (VITA, queries from the
sentence).
"""

from __future__ import annotations

from models.family import parts
from models.family.config import FamilyConfig
from models.soc.model import SOC
from models.soc.spatial_decoder import FPNSpatialDecoder


def build_soc(config: FamilyConfig) -> SOC:
    """The SOC ``config`` describes (random weights; load a checkpoint after)."""
    trunk = parts.trunk_arguments(config)
    c2 = trunk["backbone"].out_channels[0]
    decoder = FPNSpatialDecoder(
        config.d_model,
        [config.d_model, config.d_model, c2],
        config.mask_dim,
        norm_groups=config.spatial_norm_groups,
    )
    return SOC(
        mask_decoder=decoder,
        video_decoder=parts.video_decoder(config, learned_init=False),
        **trunk,
    )
