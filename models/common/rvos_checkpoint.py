"""Converter pieces every official RVOS checkpoint needs (SgMg, ReferFormer, MUTR, SOC).

Their state dicts carry keys the ports derive or ignore: RoBERTa's ``embeddings.position_ids``
(transformers < 4.31), every Video-Swin ``relative_position_index`` (checked against the port's
with :func:`models.shared.video_swin.check_relative_position_index` before being dropped) and
thop's profiling counters; and they rename by prefix (``backbone.0.body.`` -> ``backbone.``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from models.common.text_encoder import POSITION_IDS_SKIP
from models.shared.checkpoint import SkipRule

RELATIVE_POSITION_INDEX_SKIP = SkipRule(
    r".*relative_position_index", "Video-Swin index buffer: derived from the window"
)
THOP_SKIP = SkipRule(r".*(total_ops|total_params)", "thop profiling counters, not weights")
RVOS_SKIPS: tuple[SkipRule, ...] = (POSITION_IDS_SKIP, RELATIVE_POSITION_INDEX_SKIP, THOP_SKIP)


def prefix_renamer(prefixes: Sequence[tuple[str, str]]) -> Callable[[str], str]:
    """A rename function replacing the first matching (official, port) prefix pair."""

    def rename(key: str) -> str:
        for old, new in prefixes:
            if key.startswith(old):
                return new + key[len(old) :]
        return key

    return rename
