"""Import a challenge model's raw output dump (a torch ``.pth`` of per-expression mask logits
and per-frame scores, as the 2023 winners' inference scripts saved them) into a mask set.

An adapter: reading the dump needs torch and the checkpoint reader of ``models.shared``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.data import SplitMeta
from pipeline.core.errors import InputFileError, UserError
from pipeline.core.masks import ImportReport, MaskSet, Track
from pipeline.core.masks.importing import read_scores_file
from pipeline.core.masks.sources import Scores


def read_scores(path: str | Path) -> Scores:
    """Per-frame scores from JSON (:func:`pipeline.core.masks.read_scores_file`) or from an
    upstream ensemble dump (``.pth``: ``{video: {exp: {"class_info": [T floats], ...}}}``, read
    with ``weights_only=True``), whose ``class_info`` is taken."""
    path = Path(path)
    if path.suffix not in (".pth", ".pt"):
        return read_scores_file(path)
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
        with out.writing(video):
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
        done += 1
        n_exp += len(order)
    return ImportReport(done, n_exp, skipped)
