"""Official MUTR checkpoints (``{'model': ...}``, ReferFormer's layout + ``MTA.*`` and ``mti.*``).

See :mod:`models.family.convert` for the family's key map and loader.
"""

from __future__ import annotations

from models.family.convert import CheckpointLayout

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
