"""Mask sets: tracks per (video, expression), their two storages, and read-only sources."""

from pipeline.core.masks.importing import ImportReport, import_masks, read_scores_file
from pipeline.core.masks.maskset import MaskSet, exp_sort_key
from pipeline.core.masks.sources import (
    MaskSource,
    PngFolderSource,
    ZipSource,
    open_masks,
    source_name,
)
from pipeline.core.masks.track import Track

__all__ = [
    "ImportReport",
    "MaskSet",
    "MaskSource",
    "PngFolderSource",
    "Track",
    "ZipSource",
    "exp_sort_key",
    "import_masks",
    "open_masks",
    "read_scores_file",
    "source_name",
]
