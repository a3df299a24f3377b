"""Import an upstream repository's output (folder or zip, submission layout) as a mask set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.datasets import SplitMeta
from pipeline.errors import InputFileError, UserError
from pipeline.io import read_json
from pipeline.keyframes import KeyFrames, read_key_frame_json
from pipeline.masks.maskset import MaskSet
from pipeline.masks.sources import MaskSource, Scores, open_masks
from pipeline.masks.track import Track


def read_scores_file(path: str | Path) -> Scores:
    """Per-frame scores: JSON ``{video: {exp: [T floats]}}``, or an upstream ensemble dump
    (``.pth``: ``{video: {exp: {"class_info": [T floats], "mask_logits": ...}}}``, read with
    ``weights_only=True``), whose ``class_info`` is taken."""
    path = Path(path)
    if path.suffix in (".pth", ".pt"):
        from models.shared.checkpoint import read_checkpoint

        raw = read_checkpoint(path)
        try:
            return {
                str(v): {str(e): [float(s) for s in d["class_info"]] for e, d in exps.items()}
                for v, exps in raw.items()
            }
        except (KeyError, TypeError, AttributeError) as err:
            raise InputFileError(
                f"{path}: expected {{video: {{exp: {{'class_info': [...]}}}}}}"
            ) from err
    raw = read_json(path)
    if not isinstance(raw, dict) or not all(isinstance(x, dict) for x in raw.values()):
        raise InputFileError(f"{path}: expected {{video: {{exp: [scores]}}}}")
    try:
        return {
            str(v): {str(e): [float(s) for s in scores] for e, scores in exps.items()}
            for v, exps in raw.items()
        }
    except (TypeError, ValueError) as err:
        raise InputFileError(f"{path}: scores must be lists of numbers: {err}") from err


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
            raise InputFileError(f"{_where(src)}: no predictions for video {video}")
        try:
            frames = meta.videos[video][0] if meta is not None else None
            for exp in exps:
                track = source.read(video, exp)
                if frames is not None and track.frame_ids != tuple(frames):
                    missing = sorted(set(frames) - set(track.frame_ids))
                    extra = sorted(set(track.frame_ids) - set(frames))
                    raise InputFileError(
                        f"{_where(src)}: video {video} expression {exp}: frames differ from the "
                        f"meta (missing {missing[:5]}, extra {extra[:5]})"
                    )
                out.write(video, exp, track)
            chosen = key_frames.get(video) if key_frames is not None else None
            if chosen is None:
                chosen = source.key_frames(video)
            if chosen:
                out.write_key_frames(video, {e: i for e, i in chosen.items() if e in exps})
            out.mark_complete(video, exps)
        except BaseException:
            out.discard(video)
            raise
        done += 1
        n_exp += len(exps)
    return ImportReport(done, n_exp, skipped)


DUMP_VALUES = ("logits", "probs")


def import_dump(
    path: str | Path,
    dest: str | Path | MaskSet,
    meta: SplitMeta,
    *,
    values: str = "logits",
    keep_probs: bool = False,
    storage: str = "rle",
    overwrite: bool = False,
) -> ImportReport:
    """Import an upstream ensemble dump (``model_pth/<name>.pth`` or one of its split parts).

    The dump maps ``{video: {exp: {"mask_logits": T x H x W tensor, "class_info": [T]}}}``
    at the original size (lsvos2023.md, section 2); ``values`` says whether ``mask_logits``
    holds logits (SOC, MUTR, ReferFormer) or probabilities (UNINEXT). Masks = probability >
    0.5; scores = ``class_info``; the key frame of each expression = argmax of its scores;
    ``keep_probs`` stores the probabilities too (needed by the ``sigmoid_twice`` vote). Frame
    ids come from ``meta``, which must list each video with as many frames as the dump holds.
    Read with ``weights_only=True``; videos already complete are skipped unless ``overwrite``.
    """
    import torch

    from models.shared.checkpoint import read_checkpoint

    if values not in DUMP_VALUES:
        raise UserError(f"dump values must be one of {DUMP_VALUES}, got {values!r}")
    path = Path(path)
    dump = read_checkpoint(path)
    out = dest if isinstance(dest, MaskSet) else MaskSet(dest, storage)
    done = skipped = n_exp = 0
    for video in sorted(dump):
        if video not in meta.videos:
            raise InputFileError(f"{path}: video {video} is not in the meta ({meta.path})")
        if out.is_complete(video) and not overwrite:
            skipped += 1
            continue
        frames, exps = meta.videos[video]
        order = [e.id for e in exps if e.id in dump[video]]
        try:
            keys = {}
            for exp in order:
                entry = dump[video][exp]
                try:
                    soft = torch.as_tensor(entry["mask_logits"]).float()
                    scores = [float(s) for s in entry["class_info"]]
                except (KeyError, TypeError) as err:
                    raise InputFileError(
                        f"{path}: video {video} expression {exp}: expected 'mask_logits' and "
                        f"'class_info' ({err!r})"
                    ) from err
                if soft.ndim != 3 or soft.shape[0] != len(frames) or len(scores) != len(frames):
                    raise InputFileError(
                        f"{path}: video {video} expression {exp}: {tuple(soft.shape)} masks and "
                        f"{len(scores)} scores for the meta's {len(frames)} frames"
                    )
                probs = soft.sigmoid() if values == "logits" else soft
                track = Track(
                    frames, (probs > 0.5).numpy(), scores, probs.numpy() if keep_probs else None
                )
                out.write(video, exp, track)
                keys[exp] = track.key_frame()
            out.write_key_frames(video, keys)
            out.mark_complete(video, order)
        except BaseException:
            out.discard(video)
            raise
        done += 1
        n_exp += len(order)
    return ImportReport(done, n_exp, skipped)


def _where(src: object) -> str:
    return str(getattr(src, "root", getattr(src, "path", src)))
