"""Official ReferFormer checkpoints (``{'model': ...}``): the family's common prefixes plus the
FeatureResizer, the fusion and the pixel decoder.

See :mod:`models.family.convert` for the family's key map and loader.
"""

from __future__ import annotations

from models.family.convert import CheckpointLayout

REFERFORMER_LAYOUT = CheckpointLayout(
    "ReferFormer",
    ("model",),
    (
        ("resizer.", "text_proj."),
        ("fusion_module.", "fusion."),
        ("pixel_decoder.", "mask_decoder."),
    ),
)
