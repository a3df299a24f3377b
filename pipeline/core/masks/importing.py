"""Import an upstream repository's output (folder or zip, submission layout) as a mask set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.data.datasets import SplitMeta
from pipeline.core.errors import InputFileError, UserError
from pipeline.core.io import read_json
from pipeline.core.keyframes import KeyFrames, read_key_frame_json
from pipeline.core.masks.maskset import MaskSet
from pipeline.core.masks.sources import MaskSource, Scores, describe_source, open_masks


def read_scores_file(path: str | Path) -> Scores:
    """Per-frame scores from JSON ``{video: {exp: [T floats]}}``. (An upstream ensemble's
    ``.pth`` dump needs torch: :func:`pipeline.adapters.dumps.read_scores` reads both.)"""
    path = Path(path)
    if path.suffix in (".pth", ".pt"):
        raise InputFileError(
            f"{path}: a torch scores dump; read it with pipeline.adapters.dumps.read_scores"
        )
    return parse_scores(read_json(path), str(path))


def parse_scores(raw: object, where: str) -> Scores:
    """Check and convert a ``{video: {exp: [T floats]}}`` mapping."""
    if not isinstance(raw, dict) or not all(isinstance(x, dict) for x in raw.values()):
        raise InputFileError(f"{where}: expected {{video: {{exp: [scores]}}}}")
    try:
        return {
            str(v): {str(e): [float(s) for s in scores] for e, scores in exps.items()}
            for v, exps in raw.items()
        }
    except (TypeError, ValueError) as err:
        raise InputFileError(f"{where}: scores must be lists of numbers: {err}") from err


@dataclass(frozen=True)
class ImportReport:
    videos: int
    expressions: int
    skipped: int  # videos already complete in the destination


def import_masks(
    src: str | Path | MaskSource,
    dest: str | Path | MaskSet,
    *,
    scores: str | Path | Scores | None = None,
    key_frames: str | Path | KeyFrames | None = None,
    storage: str = "rle",
    meta: SplitMeta | None = None,
    videos: Sequence[str] | None = None,
    overwrite: bool = False,
) -> ImportReport:
    """Copy every (video, expression) of ``src`` into the mask set ``dest``.

    ``scores``: a scores file or mapping (see :func:`read_scores_file`). ``key_frames``: a
    challenge ``key_frame.json`` or mapping (default: the source's own ``key_frame.json``).
    ``meta``: when given, its videos, expression order and frame lists are required of the
    source. A video that fails (missing frame, corrupt PNG) is removed from ``dest`` before the
    error propagates, so nothing partial is left; videos already complete are skipped unless
    ``overwrite``.
    """
    if isinstance(scores, (str, Path)):
        scores = read_scores_file(scores)
    if isinstance(key_frames, (str, Path)):
        key_frames = read_key_frame_json(key_frames)
    source = src if isinstance(src, MaskSource) else open_masks(src, scores=scores)
    out = dest if isinstance(dest, MaskSet) else MaskSet(dest, storage)
    available = set(source.videos())
    listed = list(meta.videos) if meta is not None else sorted(available)
    if videos is not None:
        unknown = [v for v in videos if v not in set(listed)]
        if unknown:
            raise UserError(f"videos not in the {'meta' if meta else 'source'}: {unknown}")
        listed = list(videos)
    plan = {
        v: [e.id for e in meta.videos[v][1]] if meta is not None else source.expressions(v)
        for v in listed
    }
    done = skipped = n_exp = 0
    for video, exps in plan.items():
        if out.is_complete(video) and not overwrite:
            skipped += 1
            continue
        if video not in available:
            raise InputFileError(f"{describe_source(src)}: no predictions for video {video}")
        with out.writing(video):
            frames = meta.videos[video][0] if meta is not None else None
            for exp in exps:
                track = source.read(video, exp)
                if frames is not None and track.frame_ids != tuple(frames):
                    missing = sorted(set(frames) - set(track.frame_ids))
                    extra = sorted(set(track.frame_ids) - set(frames))
                    raise InputFileError(
                        f"{describe_source(src)}: video {video} expression {exp}: frames differ "
                        f"from the meta (missing {missing[:5]}, extra {extra[:5]})"
                    )
                out.write(video, exp, track)
            chosen = key_frames.get(video) if key_frames is not None else None
            if chosen is None:
                chosen = source.key_frames(video)
            if chosen:
                out.write_key_frames(video, {e: i for e, i in chosen.items() if e in exps})
            out.mark_complete(video, exps)
        done += 1
        n_exp += len(exps)
    return ImportReport(done, n_exp, skipped)
