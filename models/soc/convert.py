"""Official SOC checkpoints (``{"model_state_dict": ...}``), ``voc.*`` or challenge ``vita.*``.

See :mod:`models.family.convert` for the family's key map and loader.
"""

from __future__ import annotations

from models.family.convert import CheckpointLayout

SOC_LAYOUT = CheckpointLayout(
    "SOC",
    ("model_state_dict", "model"),
    (
        ("txt_proj.", "text_proj."),
        ("vlf.", "fusion."),
        ("lvf.", "text_from_video."),
        ("spatial_decoder.", "mask_decoder."),
        ("voc.", "video_decoder."),
        ("vita.", "video_decoder."),
    ),
)
