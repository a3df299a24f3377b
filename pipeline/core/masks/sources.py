"""Read-only mask sources: submission-layout folders and zips, and the common protocol.

Any of these can feed a vote, the packager or the scorer:

* a :class:`~pipeline.core.masks.MaskSet` folder (it has a ``maskset.json``);
* a folder in the submission layout, ``[Annotations/]<video>/<exp>/<frame>.png`` (upstream
  repositories write this), optionally with the challenge's ``key_frame.json`` beside
  ``Annotations/``;
* a zip holding that layout (Ref-YouTube-VOS's ``Annotations/`` level, MeViS's none, or one
  folder above either). Archive paths that could escape a target folder (absolute, ``..``,
  drive letters, backslashes, symbolic links) make the whole archive refused.

Any non-zero pixel is foreground. Expressions are listed in numeric order of their ids.
"""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.core.errors import InputFileError, UserError
from pipeline.core.keyframes import parse_key_frames, read_key_frame_json
from pipeline.core.masks.codec import decode_mask_pngs
from pipeline.core.masks.maskset import MaskSet, exp_sort_key
from pipeline.core.masks.track import Track

Scores = Mapping[str, Mapping[str, Sequence[float]]]  # video -> expression -> T scores


@runtime_checkable
class MaskSource(Protocol):
    """What votes, packaging and scoring read: tracks by (video, expression)."""

    @property
    def name(self) -> str: ...

    def videos(self) -> list[str]: ...

    def expressions(self, video: str) -> list[str]: ...

    def read(self, video: str, exp: str) -> Track: ...

    def key_frames(self, video: str) -> dict[str, int]: ...


# A source may also have a ``location`` property: the path its masks were opened from (a
# submission folder's ``Annotations`` level). The sources here all have one; it is optional in
# the protocol so that a wrapper or an in-memory source still is one.


def source_location(source: object) -> Path | None:
    """Where a source's masks lie, resolved (``X`` and ``X/Annotations`` coincide), or ``None``
    for a source with no place on disk: two sources with one location are one source."""
    if isinstance(source, (str, Path)):
        source = Path(source)
        return (source / "Annotations" if (source / "Annotations").is_dir() else source).resolve()
    location = getattr(source, "location", None)
    return Path(location).resolve() if isinstance(location, (str, Path)) else None


def describe_source(source: object) -> str:
    """How an error names a source: the path as the user gave it, else the source's repr."""
    if isinstance(source, (str, Path)):
        return str(source)
    location = getattr(source, "location", None)
    return str(location) if isinstance(location, (str, Path)) else repr(source)


def source_name(path: Path) -> str:
    """A source's name: its folder name (the folder above ``Annotations``), or a zip's stem."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        return path.stem
    return path.parent.name if path.name == "Annotations" else path.name


def _scores_for(scores: Scores | None, video: str, exp: str, frames: int, where: str):
    if scores is None or video not in scores or exp not in scores[video]:
        return None
    values = scores[video][exp]
    if len(values) != frames:
        raise InputFileError(
            f"scores for video {video} expression {exp} hold {len(values)} values, but {where} "
            f"has {frames} frames"
        )
    return np.asarray(values, np.float32)


class PngFolderSource:
    """A folder in the submission layout ``[Annotations/]<video>/<exp>/<frame>.png``."""

    def __init__(
        self, root: str | Path, *, scores: Scores | None = None, name: str | None = None
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise InputFileError(f"mask folder not found: {root}")
        self.root = root
        self.base = root / "Annotations" if (root / "Annotations").is_dir() else root
        self._name = name or source_name(root)
        self._scores = scores
        key_frame_file = (self.base.parent if self.base != root else root) / "key_frame.json"
        self._key_frames = read_key_frame_json(key_frame_file) if key_frame_file.is_file() else {}

    def __repr__(self) -> str:
        return f"PngFolderSource({str(self.root)!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def location(self) -> Path:
        return self.base

    def videos(self) -> list[str]:
        return sorted(
            p.name for p in self.base.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def expressions(self, video: str) -> list[str]:
        folder = self.base / video
        if not folder.is_dir():
            raise InputFileError(f"{self.root}: no folder for video {video} ({folder})")
        names = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted(names, key=exp_sort_key)

    def frame_ids(self, video: str, exp: str) -> list[str]:
        folder = self.base / video / exp
        if not folder.is_dir():
            raise InputFileError(f"{self.root}: no folder for video {video} expression {exp}")
        return sorted(p.stem for p in folder.glob("*.png") if not p.name.startswith("."))

    def read(self, video: str, exp: str) -> Track:
        frames = self.frame_ids(video, exp)
        if not frames:
            raise InputFileError(f"{self.base / video / exp}: no PNG files")
        paths = [self.base / video / exp / f"{f}.png" for f in frames]
        masks = decode_mask_pngs([(p, str(p)) for p in paths])  # frames in parallel threads
        scores = _scores_for(self._scores, video, exp, len(frames), str(self.base / video / exp))
        return Track(tuple(frames), masks, scores)

    def key_frames(self, video: str) -> dict[str, int]:
        return dict(self._key_frames.get(video, {}))


def check_member(archive: Path, info: zipfile.ZipInfo) -> PurePosixPath:
    """The member's path, or :class:`UserError` when it could escape a target folder."""
    name = info.filename
    mode = info.external_attr >> 16
    bad = (
        name.startswith(("/", "\\"))
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
        or any(part == ".." for part in name.split("/"))
        or stat.S_ISLNK(mode)
    )
    if bad:
        raise UserError(
            f"{archive}: refusing the archive: member {name!r} could escape the target folder"
        )
    return PurePosixPath(name)


class ZipSource:
    """A zip in the submission layout (with or without the ``Annotations/`` level)."""

    def __init__(
        self, path: str | Path, *, scores: Scores | None = None, name: str | None = None
    ) -> None:
        self.path = Path(path)
        self._name = name or source_name(self.path)
        self._scores = scores
        self._zip: zipfile.ZipFile | None = None
        try:
            with zipfile.ZipFile(self.path) as zf:
                infos = zf.infolist()
                members = [check_member(self.path, i) for i in infos]
                key_frame_member = next(
                    (
                        i.filename
                        for i, m in zip(infos, members, strict=True)
                        if m.name == "key_frame.json"
                    ),
                    None,
                )
                self._key_frames = {}
                if key_frame_member is not None and len(PurePosixPath(key_frame_member).parts) <= 2:
                    where = f"{self.path}:{key_frame_member}"
                    try:
                        raw = json.loads(zf.read(key_frame_member))
                    except (json.JSONDecodeError, UnicodeDecodeError) as err:
                        raise InputFileError(f"{where} is not valid JSON: {err}") from err
                    self._key_frames = parse_key_frames(raw, where)
        except zipfile.BadZipFile as err:
            raise InputFileError(f"{self.path} is not a zip file: {err}") from err
        except FileNotFoundError as err:
            raise InputFileError(f"zip not found: {self.path}") from err
        pngs = [(i, m) for i, m in zip(infos, members, strict=True) if m.suffix == ".png"]
        if not pngs:
            raise InputFileError(
                f"{self.path}: the zip holds no PNG masks (expected [Annotations/]<video>/<exp>/"
                "<frame>.png)"
            )
        self._index: dict[str, dict[str, dict[str, str]]] = {}
        strip = self._prefix_depth([m for _, m in pngs])
        for info, member in pngs:
            parts = member.parts[strip:]
            if len(parts) != 3:
                raise InputFileError(
                    f"{self.path}: member {info.filename!r} is not <video>/<exp>/<frame>.png "
                    "(optionally under Annotations/)"
                )
            video, exp, frame = parts
            frames = self._index.setdefault(video, {}).setdefault(exp, {})
            if frame[:-4] in frames:  # zipfile would silently read the last copy
                raise InputFileError(
                    f"{self.path}: member {info.filename!r} appears twice (as "
                    f"{frames[frame[:-4]]!r} too): the archive is ambiguous; write it again"
                )
            frames[frame[:-4]] = info.filename

    @staticmethod
    def _prefix_depth(members: list[PurePosixPath]) -> int:
        """How many leading folders to drop: 0, 1 (Annotations/) or 2 (<name>/Annotations/)."""
        if not members:
            return 0
        if all(len(m.parts) >= 4 and m.parts[0] == "Annotations" for m in members):
            return 1
        if all(len(m.parts) >= 5 and m.parts[1] == "Annotations" for m in members):
            return 2
        if all(len(m.parts) == 4 for m in members) and len({m.parts[0] for m in members}) == 1:
            return 1
        return 0

    def __repr__(self) -> str:
        return f"ZipSource({str(self.path)!r})"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_zip"] = None  # reopened lazily in a worker process
        return state

    @property
    def name(self) -> str:
        return self._name

    @property
    def location(self) -> Path:
        return self.path

    def _open(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def videos(self) -> list[str]:
        return sorted(self._index)

    def expressions(self, video: str) -> list[str]:
        if video not in self._index:
            raise InputFileError(f"{self.path}: no video {video}")
        return sorted(self._index[video], key=exp_sort_key)

    def frame_ids(self, video: str, exp: str) -> list[str]:
        try:
            return sorted(self._index[video][exp])
        except KeyError:
            raise InputFileError(f"{self.path}: no video {video} expression {exp}") from None

    def member_bytes(self, member: str) -> bytes:
        try:
            return self._open().read(member)
        except (zipfile.BadZipFile, OSError, KeyError) as err:
            raise InputFileError(f"{self.path}:{member}: cannot read: {err}") from err

    def read(self, video: str, exp: str) -> Track:
        frames = self.frame_ids(video, exp)
        members = [self._index[video][exp][f] for f in frames]
        # members read here, one at a time (one open archive), and decoded in parallel threads
        masks = decode_mask_pngs([(self.member_bytes(m), f"{self.path}:{m}") for m in members])
        scores = _scores_for(self._scores, video, exp, len(frames), f"{self.path}:{video}/{exp}")
        return Track(tuple(frames), masks, scores)

    def key_frames(self, video: str) -> dict[str, int]:
        return dict(self._key_frames.get(video, {}))


def open_masks(path: str | Path, *, scores: Scores | None = None) -> MaskSource:
    """A mask set, a submission-layout folder or a zip, by what ``path`` is."""
    path = Path(path)
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise InputFileError(f"{path} is neither a folder nor a zip file")
        return ZipSource(path, scores=scores)
    if MaskSet.is_mask_set(path):
        if scores is not None:
            raise UserError(f"{path} is a mask set: its scores are stored in it")
        return MaskSet(path)
    if path.is_dir():
        return PngFolderSource(path, scores=scores)
    raise InputFileError(f"mask source not found: {path}")
