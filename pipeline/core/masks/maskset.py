"""A mask set: the on-disk output of one producer, vote or propagation, for one split.

Layout under ``ROOT`` (the manifest says which storage holds the masks)::

    maskset.json                     {"format": "lsvos-maskset", "version": 1, "storage": S}
    Annotations/<video>/<exp>/<frame>.png   masks, storage "png" ('L' PNG, 0 / 255)
    tracks/<video>/<exp>.json        per track: frames, size, scores; storage "rle": the masks
                                     as COCO RLE counts (see pipeline.core.masks.rle)
    probs/<video>/<exp>.npy          optional soft probabilities, T x H x W float16
    key_frames/<video>.json          {exp: frame index}
    videos/<video>.json              completion marker: {"expressions": [...]} in order

A video becomes visible (:meth:`MaskSet.videos`) only when its completion marker is written,
after all its tracks; rewriting a track of a complete video withdraws the marker first. Each
file is written atomically, so an interrupted writer leaves only invisible, resumable work.
Different videos can be written by different processes at once.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputFileError, UserError
from pipeline.core.io import (
    atomic_write_bytes,
    atomic_write_json,
    read_json,
    staging_dir,
    writing_output,
)
from pipeline.core.keyframes import KeyFrames, read_key_frame_json, write_key_frame_json
from pipeline.core.masks.codec import decode_mask_pngs, encode_mask_pngs
from pipeline.core.masks.rle import COLUMN_MAJOR, ROW_MAJOR, decode_masks, encode_masks
from pipeline.core.masks.track import Track

MANIFEST = "maskset.json"
FORMAT = "lsvos-maskset"
VERSION = 1
STORAGES = ("rle", "png")


def exp_sort_key(exp_id: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order ("2" before "10"), then the others by name."""
    return (0, int(exp_id)) if exp_id.isdigit() else (1, exp_id)


def _check_name(kind: str, name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise UserError(f"invalid {kind} id {name!r} for a mask set")
    return name


class MaskSet:
    """A mask set folder (see the module docstring for the layout).

    ``MaskSet(root)`` opens an existing mask set, or creates one (storage ``"rle"`` unless
    ``storage`` says otherwise) where ``root`` is missing or empty. A non-empty folder without
    a manifest is refused: read submission-layout folders with
    :func:`pipeline.core.masks.open_masks`.
    """

    def __init__(self, root: str | Path, storage: str | None = None) -> None:
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if manifest_path.is_file():
            manifest = read_json(manifest_path)
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise InputFileError(f"{manifest_path} is not a mask-set manifest")
            if manifest.get("storage") not in STORAGES:
                raise InputFileError(
                    f"{manifest_path}: unknown storage {manifest.get('storage')!r}"
                )
            if storage is not None and storage != manifest["storage"]:
                raise UserError(
                    f"{self.root} is a mask set with {manifest['storage']!r} storage, "
                    f"not {storage!r}"
                )
            self.storage: str = manifest["storage"]
        else:
            if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
                raise UserError(
                    f"{self.root} exists and is not a mask set (no {MANIFEST}); use an empty "
                    "folder, or read submission-layout folders with pipeline.core.masks.open_masks"
                )
            storage = storage or "rle"
            if storage not in STORAGES:
                raise UserError(f"unknown mask-set storage {storage!r}; known: {STORAGES}")
            with writing_output(self.root, any_oserror=True):
                self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                manifest_path, {"format": FORMAT, "version": VERSION, "storage": storage}
            )
            self.storage = storage

    def __repr__(self) -> str:
        return f"MaskSet({str(self.root)!r}, storage={self.storage!r})"

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def location(self) -> Path:
        """Where the masks lie, as opened (:func:`.sources.source_location` resolves it)."""
        return self.root

    @staticmethod
    def is_mask_set(path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    # ---------------------------------------------------------------------------- paths

    def _record_path(self, video: str, exp: str) -> Path:
        return self.root / "tracks" / video / f"{exp}.json"

    def _png_dir(self, video: str, exp: str) -> Path:
        return self.root / "Annotations" / video / exp

    def _probs_path(self, video: str, exp: str) -> Path:
        return self.root / "probs" / video / f"{exp}.npy"

    def _marker_path(self, video: str) -> Path:
        return self.root / "videos" / f"{video}.json"

    def _key_frames_path(self, video: str) -> Path:
        return self.root / "key_frames" / f"{video}.json"

    # ---------------------------------------------------------------------------- reading

    def videos(self) -> list[str]:
        """Complete videos, sorted."""
        folder = self.root / "videos"
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith("."))

    def is_complete(self, video: str) -> bool:
        return self._marker_path(video).is_file()

    def expressions(self, video: str) -> list[str]:
        """The expressions of a complete video, in the order the writer gave."""
        marker = self._marker_path(video)
        if not marker.is_file():
            raise UserError(f"video {video} is not complete in mask set {self.root}")
        return list(read_json(marker)["expressions"])

    def written_expressions(self, video: str) -> list[str]:
        """Expressions with a written track, complete video or not (numeric order)."""
        folder = self.root / "tracks" / video
        if not folder.is_dir():
            return []
        names = [p.stem for p in folder.glob("*.json") if not p.name.startswith(".")]
        return sorted(names, key=exp_sort_key)

    def has_track(self, video: str, exp: str) -> bool:
        return self._record_path(video, exp).is_file()

    def read(self, video: str, exp: str) -> Track:
        """The track of (video, expression); a missing or corrupt file raises naming it."""
        path = self._record_path(video, exp)
        if not path.is_file():
            raise InputFileError(
                f"mask set {self.root}: no track for video {video} expression {exp}"
            )
        record = read_json(path)
        try:
            frames = tuple(record["frames"])
            H, W = (int(v) for v in record["size"])
            if self.storage == "rle":
                rle = record["rle"]
                masks = decode_masks(rle["counts"], (H, W), rle.get("order", COLUMN_MAJOR))
            else:
                pngs = [self._png_dir(video, exp) / f"{fid}.png" for fid in frames]
                masks = decode_mask_pngs([(p, str(p)) for p in pngs])
                if masks.shape[1:] != (H, W):
                    raise InputFileError(
                        f"{pngs[0]} is {masks.shape[1]}x{masks.shape[2]}, expected {H}x{W}"
                    )
        except (KeyError, TypeError, ValueError) as err:
            raise InputFileError(f"{path}: malformed track record: {err!r}") from err
        probs = None
        if record.get("probs"):
            probs_path = self._probs_path(video, exp)
            try:
                probs = np.load(probs_path, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise InputFileError(f"cannot read probabilities {probs_path}: {err}") from err
        return Track(frames, masks, record.get("scores"), probs)

    def key_frames(self, video: str) -> dict[str, int]:
        path = self._key_frames_path(video)
        if not path.is_file():
            return {}
        return {str(k): int(v) for k, v in read_json(path).items()}

    # ---------------------------------------------------------------------------- writing

    def write(self, video: str, exp: str, track: Track) -> None:
        """Write one track atomically (the video stays invisible until :meth:`mark_complete`)."""
        self.write_group(video, {exp: track})

    def write_group(self, video: str, tracks: Mapping[str, Track]) -> None:
        """Write several tracks of a video; tracks sharing one ``masks`` array (a pooled vote
        writes one fused mask for both expressions of a pair) are encoded once."""
        _check_name("video", video)
        for exp in tracks:
            _check_name("expression", exp)
        self._marker_path(video).unlink(missing_ok=True)
        encoded: list[tuple[np.ndarray, list]] = []
        for exp, track in tracks.items():
            cached = next((enc for masks, enc in encoded if masks is track.masks), None)
            if cached is None:
                cached = self._encode(track.masks)
                encoded.append((track.masks, cached))
            self._store(video, exp, track, cached)

    def _encode(self, masks: np.ndarray) -> list:
        if self.storage == "rle":
            return encode_masks(masks, ROW_MAJOR)
        return encode_mask_pngs(masks)

    def _store(self, video: str, exp: str, track: Track, encoded: list) -> None:
        H, W = track.size
        record: dict = {
            "frames": list(track.frame_ids),
            "size": [H, W],
            "scores": None if track.scores is None else [float(s) for s in track.scores],
            "probs": track.probs is not None,
        }
        if self.storage == "rle":
            record["rle"] = {"order": ROW_MAJOR, "counts": encoded}
        else:
            with staging_dir(self._png_dir(video, exp)) as tmp:
                for fid, data in zip(track.frame_ids, encoded, strict=True):
                    (tmp / f"{fid}.png").write_bytes(data)
        if track.probs is not None:
            buf = io.BytesIO()
            np.save(buf, track.probs.astype(np.float16), allow_pickle=False)
            atomic_write_bytes(self._probs_path(video, exp), buf.getvalue())
        else:
            self._probs_path(video, exp).unlink(missing_ok=True)
        atomic_write_json(self._record_path(video, exp), record)

    def write_key_frames(self, video: str, key_frames: Mapping[str, int]) -> None:
        _check_name("video", video)
        atomic_write_json(self._key_frames_path(video), {k: int(v) for k, v in key_frames.items()})

    def mark_complete(self, video: str, expressions: Sequence[str] | None = None) -> None:
        """Make the video visible, with ``expressions`` (default: those written) in order."""
        exps = list(expressions) if expressions is not None else self.written_expressions(video)
        missing = [e for e in exps if not self.has_track(video, e)]
        if missing:
            raise UserError(f"mask set {self.root}: video {video} has no track for {missing}")
        atomic_write_json(self._marker_path(video), {"expressions": exps})

    def discard(self, video: str) -> None:
        """Remove everything written for a video (used when writing it failed)."""
        self._marker_path(video).unlink(missing_ok=True)
        self._key_frames_path(video).unlink(missing_ok=True)
        for sub in ("tracks", "Annotations", "probs"):
            shutil.rmtree(self.root / sub / video, ignore_errors=True)

    @contextlib.contextmanager
    def writing(self, video: str) -> Iterator[None]:
        """Write ``video`` inside this block: if anything in it fails (an interrupt included),
        what was written for the video is discarded before the error goes on, so a partial
        video never stays behind."""
        try:
            yield
        except BaseException:
            self.discard(video)
            raise

    # ---------------------------------------------------------------------------- exchange

    def export_key_frame_json(self, path: str | Path, videos: Iterable[str] | None = None) -> None:
        """Key frames of complete videos in the challenge's ``key_frame.json`` schema."""
        chosen = self.videos() if videos is None else list(videos)
        write_key_frame_json(path, {v: self.key_frames(v) for v in chosen if self.key_frames(v)})

    def import_key_frame_json(self, path: str | Path) -> KeyFrames:
        """Store the key frames of a challenge ``key_frame.json`` (per video); returns them."""
        key_frames = read_key_frame_json(path)
        for video, exps in key_frames.items():
            self.write_key_frames(video, exps)
        return key_frames

    def export_png(
        self,
        dest: str | Path,
        *,
        annotations_level: bool = True,
        videos: Iterable[str] | None = None,
    ) -> Path:
        """Write the submission PNG layout ``dest/[Annotations/]<video>/<exp>/<frame>.png``."""
        base = Path(dest) / "Annotations" if annotations_level else Path(dest)
        for video in self.videos() if videos is None else videos:
            for exp in self.expressions(video):
                target = base / video / exp
                if self.storage == "png":
                    with staging_dir(target) as tmp:
                        for png in self._png_dir(video, exp).glob("*.png"):
                            shutil.copyfile(png, tmp / png.name)
                    continue
                track = self.read(video, exp)
                encoded = encode_mask_pngs(track.masks)
                with staging_dir(target) as tmp:
                    for fid, data in zip(track.frame_ids, encoded, strict=True):
                        (tmp / f"{fid}.png").write_bytes(data)
        return Path(dest)
