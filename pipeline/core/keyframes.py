"""Key frames: one frame index per (video, expression), where propagation starts.

The challenge picks ``argmax`` of a producer's per-frame scores (lsvos2023.md, section 5) and
stores it in ``key_frame.json`` as ``{video: {exp: {"index_info": {"class_index": i}}}}``, where
``i`` indexes the video's listed frames (not a frame name). This module reads and writes that
schema; mask sets keep key frames per video (see :class:`pipeline.core.masks.MaskSet`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.core.errors import InputFileError
from pipeline.core.io import atomic_write_json, read_json

KeyFrames = dict[str, dict[str, int]]  # video -> expression -> frame index


def read_key_frame_json(path: str | Path) -> KeyFrames:
    """Parse a challenge ``key_frame.json``; a bad entry raises naming video and expression."""
    return parse_key_frames(read_json(path), str(path))


def parse_key_frames(raw: object, where: str) -> KeyFrames:
    """Validate the challenge schema (already parsed JSON); ``where`` names it in errors."""
    if not isinstance(raw, dict):
        raise InputFileError(f"{where}: expected {{video: {{exp: {{'index_info': ...}}}}}}")
    out: KeyFrames = {}
    for video, exps in raw.items():
        if not isinstance(exps, dict):
            raise InputFileError(f"{where}: video {video}: expected a mapping of expressions")
        out[str(video)] = {}
        for exp, entry in exps.items():
            try:
                index = entry["index_info"]["class_index"]
                if isinstance(index, bool) or int(index) != index or index < 0:
                    raise ValueError(index)
            except (KeyError, TypeError, ValueError) as err:
                raise InputFileError(
                    f"{where}: video {video} expression {exp}: expected "
                    f"{{'index_info': {{'class_index': <frame index>}}}}, got {entry!r}"
                ) from err
            out[str(video)][str(exp)] = int(index)
    return out


def write_key_frame_json(path: str | Path, key_frames: Mapping[str, Mapping[str, int]]) -> None:
    """Write the challenge schema (videos and expressions in the given order), atomically."""
    atomic_write_json(
        path,
        {
            video: {exp: {"index_info": {"class_index": int(i)}} for exp, i in exps.items()}
            for video, exps in key_frames.items()
        },
    )
