"""Submission zips: packaging (reproducible to the byte) and validation (every problem named).

Layouts (datasets.md, sections 1.5 and 2.4): Ref-YouTube-VOS ``Annotations/<video>/<exp>/
<frame>.png``; MeViS ``<video>/<exp>/<frame>.png`` at the zip root. One PNG for every frame the
meta lists, for every expression of every video of the split; 8-bit greyscale ('L'), 0 / 255,
at the frame's size.

Packaging re-encodes every mask with one fixed PNG encoder, writes members in sorted order with
a fixed timestamp and attributes and no compression (PNG is compressed already): the same masks
give the same bytes, whatever storage or encoder they came from.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.core.data.datasets import SplitMeta, default_exclude, read_split_meta
from pipeline.core.errors import InputFileError, UserError
from pipeline.core.io import (
    decode_png_strict,
    encode_mask_png,
    image_size,
    locked_temp_file,
    remove_stale_temps,
    writing_output,
)
from pipeline.core.masks.maskset import exp_sort_key
from pipeline.core.masks.sources import MaskSource, check_member, open_masks
from pipeline.core.parallel import process_imap

SUBMISSION_FORMATS: tuple[str, ...] = ("ytvos", "mevis")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _prefix(format: str) -> str:
    if format not in SUBMISSION_FORMATS:
        raise UserError(f"unknown submission format {format!r}; known: {SUBMISSION_FORMATS}")
    return "Annotations/" if format == "ytvos" else ""


def load_meta(meta: SplitMeta | str | Path) -> SplitMeta:
    """A :class:`SplitMeta`; a Ref-YouTube-VOS valid meta leaves out the sibling test videos."""
    if isinstance(meta, SplitMeta):
        return meta
    path = Path(meta)
    return read_split_meta(path, exclude=default_exclude(path))


def frame_root_for(meta_path: Path, format: str) -> Path | None:
    """Where the split's JPEGs are, from the meta's place in the dataset layout (or None)."""
    if format == "mevis":
        root = meta_path.parent / "JPEGImages"
    else:  # ROOT/meta_expressions/<split>/meta_expressions.json -> ROOT/<split>/JPEGImages
        root = meta_path.parent.parent.parent / meta_path.parent.name / "JPEGImages"
    return root if root.is_dir() else None


def _frame_size(
    frame_root: Path | None, video: str, frames: Sequence[str]
) -> tuple[int, int] | None:
    if frame_root is None or not frames:
        return None
    path = frame_root / video / f"{frames[0]}.jpg"
    return image_size(path) if path.is_file() else None


# --------------------------------------------------------------------------------------------
# packaging


def _zip_info(name: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # Unix, whatever the host
    info.external_attr = 0o644 << 16
    info.file_size = size
    return info


def _encode_track(
    source: MaskSource, job: tuple[str, str, tuple[str, ...], tuple[int, int] | None]
) -> list[tuple[str, bytes]]:
    video, exp, frames, size = job
    track = source.read(video, exp).select(frames, label=f"video {video} expression {exp}: masks")
    if size is not None and track.size != size:
        raise UserError(
            f"video {video} expression {exp}: masks are {track.size[0]}x{track.size[1]}, the "
            f"frames are {size[0]}x{size[1]}"
        )
    return [(f, encode_mask_png(m)) for f, m in zip(frames, track.masks, strict=True)]


def package(
    masks: MaskSource | str | Path,
    meta: SplitMeta | str | Path,
    format: str,
    out_zip: str | Path,
    *,
    frame_root: str | Path | None = None,
    workers: int = 1,
) -> Path:
    """Write the submission zip of ``masks`` for the split of ``meta``; returns its path.

    Every listed frame of every expression must be in ``masks`` (else :class:`UserError` naming
    it). ``frame_root``: the split's ``JPEGImages`` (default: found from the meta's place in the
    dataset layout) to check mask sizes against. The zip is written to a temporary sibling
    ``.<name>.<hex>.tmp``, locked while it is written, and moved into place; leftovers of
    killed packagings of the same target (no live writer holds them, see
    :func:`pipeline.core.io.remove_stale_temps`) are removed first.
    """
    prefix = _prefix(format)
    source = masks if isinstance(masks, MaskSource) else open_masks(masks)
    split = load_meta(meta)
    images = Path(frame_root) if frame_root is not None else frame_root_for(split.path, format)
    available = set(source.videos())
    jobs = []
    for video in sorted(split.videos):
        frames, exps = split.videos[video]
        if video not in available:
            raise UserError(f"the masks have no video {video} (listed in {split.path})")
        size = _frame_size(images, video, frames)
        have = set(source.expressions(video))
        for exp in (e.id for e in exps):
            if exp not in have:
                raise UserError(f"the masks have no expression {exp} of video {video}")
            jobs.append((video, exp, tuple(frames), size))
    # members of one track share "<video>/<exp>/", which no other track's folder starts with,
    # so sorting tracks by that folder and frames within a track sorts every member name
    jobs.sort(key=lambda job: f"{job[0]}/{job[1]}/")
    out_zip = Path(out_zip)
    with writing_output(out_zip, any_oserror=True):
        out_zip.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_zip)
    with (
        locked_temp_file(out_zip) as (_, f),
        zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf,
    ):
        encoded_tracks = process_imap(_encode_track, jobs, source, workers=workers, chunksize=4)
        for (video, exp, _, _), encoded in zip(jobs, encoded_tracks, strict=True):
            for frame, data in sorted(encoded):
                zf.writestr(_zip_info(f"{prefix}{video}/{exp}/{frame}.png", len(data)), data)
    return out_zip


# --------------------------------------------------------------------------------------------
# validation


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a submission: ``kind``, the member or item, and what is wrong."""

    kind: str
    where: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}" + (f" ({self.detail})" if self.detail else "")


def _png_kind(data: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) from the IHDR chunk, or None when it is not a PNG."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < 26 or data[12:16] != b"IHDR":
        return None
    return data[24], data[25]


def _check_png(data: bytes, where: str, size: tuple[int, int] | None) -> list[Problem]:
    kind = _png_kind(data)
    if kind is None:
        return [Problem("not_png", where, "not a PNG file")]
    try:
        pixels = decode_png_strict(data, where)
    except InputFileError as err:
        return [Problem("corrupt_png", where, str(err))]
    problems = []
    if kind != (8, 0):
        problems.append(
            Problem(
                "wrong_mode", where, f"bit depth {kind[0]}, colour type {kind[1]}; need 8-bit 'L'"
            )
        )
    if size is not None and pixels.shape[:2] != size:
        problems.append(
            Problem(
                "wrong_size",
                where,
                f"{pixels.shape[0]}x{pixels.shape[1]}, the frame is {size[0]}x{size[1]}",
            )
        )
    values = np.unique(pixels)
    if not set(values.tolist()) <= {0, 255}:
        shown = ", ".join(str(v) for v in values[:6]) + (" ..." if values.size > 6 else "")
        problems.append(Problem("bad_values", where, f"values {shown}; need 0 and 255 only"))
    return problems


def validate(
    zip_path: str | Path,
    meta: SplitMeta | str | Path,
    format: str,
    *,
    frame_root: str | Path | None = None,
) -> list[Problem]:
    """Every problem of a submission zip for the split of ``meta``; an empty list = valid.

    Checks: a readable zip; no member path that could escape a folder; no member name stored
    twice; the layout of ``format``; every listed video, expression and frame present (a
    missing video or expression is reported once, not per frame); nothing extra; each PNG whole
    and decodable by both OpenCV and PIL, 8-bit greyscale, 0 / 255 only, at the frame's size
    (from ``frame_root``, by default the split's ``JPEGImages`` found from the meta's place;
    without it, the size most of the video's masks have).
    """
    prefix = _prefix(format)
    split = load_meta(meta)
    images = Path(frame_root) if frame_root is not None else frame_root_for(split.path, format)
    zip_path = Path(zip_path)
    problems: list[Problem] = []
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        return [Problem("not_a_zip", str(zip_path), str(err))]
    with zf:
        files: dict[str, zipfile.ZipInfo] = {}
        unsafe: set[str] = set()
        counts = Counter(info.filename for info in zf.infolist())
        for name in sorted(n for n, k in counts.items() if k > 1):
            problems.append(Problem("duplicate_member", name, f"stored {counts[name]} times"))
        for info in zf.infolist():
            try:
                check_member(zip_path, info)
            except UserError:
                problems.append(Problem("unsafe_path", info.filename, "could escape the folder"))
                unsafe.add(info.filename)
                continue
            if not info.is_dir():
                files[info.filename] = info
        misplaced = _misplaced_level(files, prefix, split, format)
        if misplaced is not None:  # one problem says it all, not one per member
            return [*problems, misplaced]
        expected_dirs = {prefix.rstrip("/")} if prefix else set()
        seen: set[str] = set()
        for video in sorted(split.videos):
            frames, exps = split.videos[video]
            expected_dirs.add(f"{prefix}{video}")
            video_members = [f"{prefix}{video}/{e.id}/{f}.png" for e in exps for f in frames]
            if not any(m in files for m in video_members):
                problems.append(Problem("missing_video", f"{prefix}{video}/"))
                continue
            size = _frame_size(images, video, frames)
            if size is None:
                size = _majority_size(zf, files, video_members)
            for exp in sorted((e.id for e in exps), key=exp_sort_key):
                expected_dirs.add(f"{prefix}{video}/{exp}")
                members = [f"{prefix}{video}/{exp}/{f}.png" for f in frames]
                present = [m for m in members if m in files]
                if not present:
                    problems.append(
                        Problem(
                            "missing_expression",
                            f"{prefix}{video}/{exp}/",
                            f"no mask for any of its {len(frames)} frames; the split lists "
                            f"expression {exp} of video {video}",
                        )
                    )
                    continue
                for member in members:
                    if member not in files:
                        problems.append(Problem("missing_frame", member))
                        continue
                    seen.add(member)
                    problems.extend(_check_png(zf.read(member), member, size))
        for name in sorted(files):
            if name not in seen:
                problems.append(Problem("extra_file", name, _why_extra(name, prefix, split)))
        for info in zf.infolist():
            folder = info.filename.rstrip("/")
            if info.is_dir() and folder not in expected_dirs and info.filename not in unsafe:
                problems.append(Problem("extra_file", info.filename, "unexpected folder"))
    return problems


def _layout_name(format: str) -> str:
    return "MeViS" if format == "mevis" else "Ref-YouTube-VOS"


def _leading_folders(names: Iterable[str], split: SplitMeta) -> Counter[str]:
    """How many ``names`` end in a listed ``<video>/<exp>/<frame>.png``, per leading folder
    path ("" for none): where the zip actually put the split's masks."""
    listed = {
        video: ({e.id for e in exps}, set(frames)) for video, (frames, exps) in split.videos.items()
    }
    found: Counter[str] = Counter()
    for name in names:
        parts = name.split("/")
        if len(parts) < 3 or not parts[-1].endswith(".png"):
            continue
        video, exp, frame = parts[-3], parts[-2], parts[-1][:-4]
        if video in listed and exp in listed[video][0] and frame in listed[video][1]:
            found["/".join(parts[:-3])] += 1
    return found


def _misplaced_level(
    files: Mapping[str, zipfile.ZipInfo], prefix: str, split: SplitMeta, format: str
) -> Problem | None:
    """A ``wrong_layout`` problem when none of the split's masks is where ``format`` wants it
    but they are under another folder (an ``Annotations/`` level in a MeViS zip, none in a
    Ref-YouTube-VOS zip, or a wrapping folder); None otherwise."""
    found = _leading_folders(files, split)
    expected = prefix.rstrip("/")
    if not found or found.get(expected, 0) > 0:
        return None
    actual, count = found.most_common(1)[0]
    wanted = f"{prefix}<video>/<exp>/<frame>.png"
    if not actual:
        placed = f"puts the split's masks ({count} found) at the zip root"
        fix = f"put the video folders under {prefix} (lsvos package --format {format})"
    elif prefix and actual.endswith(f"/{expected}"):
        placed = f"puts the split's masks ({count} found) under {actual}/"
        base = actual[: -len(expected) - 1]
        fix = f"zip from inside {base}/ (cd {base} && zip -r ../submission.zip {expected})"
    else:
        placed = f"puts the split's masks ({count} found) under {actual}/"
        fix = f"zip what is inside {actual}/ (cd {actual} && zip -r ../submission.zip *)"
        if prefix:
            fix = f"put the video folders directly under {prefix}"
    if format == "mevis" and actual.split("/")[-1] == "Annotations":
        placed += " (the Ref-YouTube-VOS layout)"
    elif format == "ytvos" and not actual:
        placed += " (the MeViS layout)"
    return Problem(
        "wrong_layout",
        f"{actual}/" if actual else "(zip root)",
        f"the {_layout_name(format)} server wants {wanted} at the zip root; "
        f"this zip {placed}: {fix}",
    )


def _majority_size(
    zf: zipfile.ZipFile, files: dict[str, zipfile.ZipInfo], members: list[str]
) -> tuple[int, int] | None:
    """The (H, W) most of a sample of the video's PNGs declare in their IHDR chunk."""
    present = [m for m in members if m in files]
    sizes: dict[tuple[int, int], int] = {}
    for member in present[:: max(len(present) // 8, 1)]:
        data = zf.read(member)
        if _png_kind(data) is not None:
            size = (int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big"))
            sizes[size] = sizes.get(size, 0) + 1
    return max(sizes, key=lambda s: sizes[s]) if sizes else None


def _why_extra(name: str, prefix: str, split: SplitMeta) -> str:
    if prefix and not name.startswith(prefix):
        return f"outside {prefix}"
    parts = PurePosixPath(name[len(prefix) :]).parts
    if len(parts) > 3 and _leading_folders([name], split):
        return f"misplaced: the split's {prefix}{'/'.join(parts[-3:])} under {parts[0]}/"
    if len(parts) != 3 or not name.endswith(".png"):
        return "not <video>/<exp>/<frame>.png"
    video, exp, frame = parts
    if video not in split.videos:
        return f"video {video} is not in the split"
    exps = split.videos[video][1]
    if exp not in {e.id for e in exps}:
        return f"video {video} has no expression {exp}"
    return f"frame {frame[:-4]} is not listed for video {video}"
