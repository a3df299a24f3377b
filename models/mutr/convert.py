"""Official MUTR checkpoints (``{'model': ...}``, ReferFormer's layout + ``MTA.*`` and ``mti.*``).

See :mod:`models.referformer.convert` for the family's key map.
"""

from __future__ import annotations

from models.referformer.convert import CheckpointLayout

MUTR_LAYOUT = CheckpointLayout(
    "MUTR",
    ("model",),
    (
        ("resizer.", "text_proj."),
        ("fusion_module.", "fusion."),
        ("pixel_decoder.", "mask_decoder."),
        ("MTA.", "mta."),
        ("mti.", "video_decoder."),
    ),
)
