"""A produce node whose producer imports existing predictions (``family: import``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pipeline.adapters.dumps import read_scores
from pipeline.core.data import SplitMeta
from pipeline.core.errors import UserError
from pipeline.core.masks import MaskSet, import_masks, open_masks
from pipeline.orchestration.jobs import NodeJob
from pipeline.orchestration.splits import open_split


def import_predictions(job: NodeJob, video: str, out: MaskSet) -> None:
    """Copy the video's predictions, checked against the split's expressions and frames (key
    frames come later from the source's ``key_frame.json`` or the argmax of its scores)."""
    settings = job.required_producer()
    source = open_masks(settings.predictions, scores=_scores(settings.scores))
    meta = open_split(job.dataset).meta
    one_video = SplitMeta({video: meta.videos[video]}, meta.path)
    try:
        import_masks(source, out, meta=one_video, videos=[video], overwrite=True)
    except UserError as err:
        raise UserError(f"import {job.name} ({settings.predictions}): {err}") from err


@lru_cache(maxsize=4)
def _scores(path: str | None) -> Any:
    return None if path is None else read_scores(path)
