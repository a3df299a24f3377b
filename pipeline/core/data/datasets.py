"""Lazy readers for Ref-YouTube-VOS, MeViS and Ref-DAVIS17 (layouts in datasets.md).

Opening a split parses its ``meta_expressions.json`` and nothing else: no image is read until
frames, sizes or ground truth are asked for. Expression order is the meta file's key order
(the challenge's expression pairing depends on it); videos are sorted by id.

* ``ytvos``: ``ROOT/meta_expressions/<split>/meta_expressions.json``, frames under
  ``ROOT/<split>/JPEGImages``; the valid split is the valid meta's videos minus the test meta's
  (the valid meta of Ref-YouTube-VOS also lists the 305 test videos). Ground truth, where
  ``ROOT/<split>/Annotations`` exists and expressions carry ``obj_id``: annotation == obj_id.
  An ``obj_id`` that no annotation has is refused: checked against the split's ``meta.json``
  object listing when opening (no PNG is read), else against the decoded annotations.
* ``mevis``: ``ROOT/<split>/meta_expressions.json`` and ``JPEGImages``; ground truth = union of
  the expression's ``anno_id`` masks in ``ROOT/<split>/mask_dict.json`` (COCO RLE, ``null`` =
  absent in that frame).
* ``davis``: Ref-DAVIS17 converted to the Ref-YouTube-VOS layout (ReferFormer's
  ``convert_davis_to_ytvos.py``); like ``ytvos`` without the valid-minus-test rule.

Video, expression and frame ids are joined into paths, so an id that is empty, ``.``, ``..``
or holds ``/`` or a backslash is refused when the meta is read.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np

from pipeline.core.errors import InputFileError, UserError
from pipeline.core.io import image_size, read_index_png, read_json, read_rgb

DatasetFormat = Literal["ytvos", "mevis", "davis"]
FORMATS: tuple[str, ...] = ("ytvos", "mevis", "davis")


@dataclass(frozen=True)
class Expression:
    """One referring expression of a video.

    ``obj_ids``: the objects it refers to where the meta says so (one for Ref-YouTube-VOS and
    Ref-DAVIS17, any number for MeViS), else ``None``. ``anno_ids``: MeViS's mask_dict keys.
    """

    id: str
    text: str
    obj_ids: tuple[int, ...] | None = None
    anno_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Video:
    """A video of a split: ordered frame ids and where their JPEGs are. Size is read lazily."""

    id: str
    frame_ids: tuple[str, ...]
    frame_dir: Path
    frame_ext: str = ".jpg"
    _size: list[tuple[int, int]] = field(default_factory=list, repr=False, compare=False)

    @property
    def frame_paths(self) -> tuple[Path, ...]:
        return tuple(self.frame_dir / f"{f}{self.frame_ext}" for f in self.frame_ids)

    @property
    def num_frames(self) -> int:
        return len(self.frame_ids)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the first frame, from its header (cached)."""
        if not self._size:
            if not self.frame_ids:
                raise InputFileError(f"video {self.id} lists no frames")
            self._size.append(image_size(self.frame_paths[0]))
        return self._size[0]


@dataclass(frozen=True)
class SplitMeta:
    """A split's videos (sorted by id) with their frames and expressions (meta key order)."""

    videos: dict[str, tuple[tuple[str, ...], tuple[Expression, ...]]]
    path: Path


def _parse_obj_ids(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        return None


def _check_id(path: Path, kind: str, value: str, video: str | None = None) -> str:
    """``value`` if it is safe to join into a path (one plain path component), else an
    :class:`InputFileError` naming the meta file, the kind of id and the id."""
    if value in ("", ".", "..") or "/" in value or "\\" in value or "\0" in value:
        where = f" of video {video!r}" if video is not None else ""
        raise InputFileError(
            f"{path}: {kind} id {value!r}{where} is not a plain name (empty, '.', '..', or "
            "holding '/' or a backslash); ids are joined into paths"
        )
    return value


def read_split_meta(path: str | Path, *, exclude: str | Path | None = None) -> SplitMeta:
    """Parse a ``meta_expressions.json``; videos listed in ``exclude`` (a meta path) are left out.

    Raises :class:`InputFileError` naming the file and the video on a malformed entry, and
    naming the file and the id when a video, expression or frame id is not a plain path
    component (see :func:`_check_id`).
    """
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("videos"), dict):
        raise InputFileError(f"{path}: expected an object with a 'videos' mapping")
    excluded: set[str] = set()
    if exclude is not None:
        excluded_raw = read_json(exclude)
        excluded = set(excluded_raw.get("videos", {})) if isinstance(excluded_raw, dict) else set()
    videos: dict[str, tuple[tuple[str, ...], tuple[Expression, ...]]] = {}
    for vid in sorted(raw["videos"]):
        if vid in excluded:
            continue
        _check_id(path, "video", vid)
        entry = raw["videos"][vid]
        try:
            frames = tuple(_check_id(path, "frame", str(f), vid) for f in entry["frames"])
            exps = tuple(
                Expression(
                    _check_id(path, "expression", str(eid), vid),
                    str(e["exp"]),
                    _parse_obj_ids(e.get("obj_id")),
                    tuple(str(a) for a in e["anno_id"]) if "anno_id" in e else None,
                )
                for eid, e in entry["expressions"].items()
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise InputFileError(f"{path}: malformed entry for video {vid}: {err!r}") from err
        videos[vid] = (frames, exps)
    return SplitMeta(videos, path)


def default_exclude(meta_path: Path) -> Path | None:
    """For Ref-YouTube-VOS valid: the sibling test meta, whose videos valid must leave out."""
    if meta_path.parent.name != "valid":
        return None
    test = meta_path.parent.parent / "test" / meta_path.name
    return test if test.is_file() else None


class RVOSDataset(ABC):
    """A split of an RVOS dataset. Subclasses say where the meta, frames and ground truth are."""

    format: str = ""

    def __init__(self, root: str | Path, split: str, meta: SplitMeta, frame_root: Path) -> None:
        self.root = Path(root)
        self.split = split
        self.meta = meta
        self.frame_root = frame_root
        self._videos = {
            vid: Video(vid, frames, frame_root / vid) for vid, (frames, _) in meta.videos.items()
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.root)!r}, {self.split!r}, {len(self._videos)} videos)"
        )

    def __len__(self) -> int:
        return len(self._videos)

    def video_ids(self) -> list[str]:
        return list(self._videos)

    def videos(self) -> list[Video]:
        """Every video of the split, sorted by id."""
        return list(self._videos.values())

    def video(self, video_id: str) -> Video:
        try:
            return self._videos[video_id]
        except KeyError:
            raise UserError(
                f"video {video_id!r} is not in the {self.format} {self.split} split "
                f"({self.meta.path})"
            ) from None

    def expressions(self, video_id: str) -> list[Expression]:
        """The video's expressions in the meta file's key order."""
        self.video(video_id)
        return list(self.meta.videos[video_id][1])

    def expression(self, video_id: str, exp_id: str) -> Expression:
        for exp in self.expressions(video_id):
            if exp.id == exp_id:
                return exp
        raise UserError(f"video {video_id} has no expression {exp_id!r} ({self.meta.path})")

    def read_frames(self, video_id: str) -> np.ndarray:
        """All listed frames as ``T x H x W x 3 uint8`` RGB; a corrupt JPEG names itself."""
        video = self.video(video_id)
        frames: list[np.ndarray] = []
        for path in video.frame_paths:
            frame = read_rgb(path)
            if frames and frame.shape != frames[0].shape:
                raise InputFileError(
                    f"video {video_id}: frame {path} is {frame.shape[0]}x{frame.shape[1]}, the "
                    f"first frame is {frames[0].shape[0]}x{frames[0].shape[1]}"
                )
            frames.append(frame)
        return np.stack(frames)

    @property
    @abstractmethod
    def has_ground_truth(self) -> bool:
        """Whether :meth:`ground_truth` can answer for this split."""

    @abstractmethod
    def ground_truth(self, video_id: str, exp_id: str) -> np.ndarray | None:
        """``T x H x W bool`` ground truth of the expression, or ``None`` where there is none."""


class YTVOSDataset(RVOSDataset):
    """Ref-YouTube-VOS (and the synthetic benchmark): ``ROOT/meta_expressions/<split>/...``."""

    format = "ytvos"
    subtract_test = True

    def __init__(self, root: str | Path, split: str) -> None:
        root = Path(root)
        meta_path = root / "meta_expressions" / split / "meta_expressions.json"
        if not meta_path.is_file():
            raise InputFileError(
                f"no {self.format} split {split!r} under {root}: {meta_path} is missing"
            )
        exclude = default_exclude(meta_path) if self.subtract_test else None
        super().__init__(
            root, split, read_split_meta(meta_path, exclude=exclude), root / split / "JPEGImages"
        )
        self.annotation_root = root / split / "Annotations"
        self.objects_path = root / split / "meta.json"
        if self.annotation_root.is_dir():
            self._check_listed_objects()

    @functools.cached_property
    def has_ground_truth(self) -> bool:
        if not self.annotation_root.is_dir():
            return False
        return all(e.obj_ids is not None for _, exps in self.meta.videos.values() for e in exps)

    @functools.cached_property
    def _listed_objects(self) -> dict[str, frozenset[int]] | None:
        """The annotated object ids per video from the split's ``meta.json``
        (``{"videos": {v: {"objects": {id: ...}}}}``), or ``None`` where there is no such file."""
        if not self.objects_path.is_file():
            return None
        raw = read_json(self.objects_path)
        if not isinstance(raw, dict) or not isinstance(raw.get("videos"), dict):
            raise InputFileError(f"{self.objects_path}: expected an object with a 'videos' mapping")
        listed: dict[str, frozenset[int]] = {}
        for vid, entry in raw["videos"].items():
            try:
                listed[str(vid)] = frozenset(int(k) for k in entry["objects"])
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                raise InputFileError(
                    f"{self.objects_path}: malformed objects of video {vid}: {err!r}"
                ) from err
        return listed

    def _unknown_object(self, video_id: str, exp: Expression, obj_id: int, source: str) -> NoReturn:
        """Raise the error naming the meta file, video, expression, obj_id and what was searched."""
        raise InputFileError(
            f"{self.meta.path}: video {video_id} expression {exp.id} names obj_id {obj_id}, "
            f"which no annotation has ({source})"
        )

    def _check_listed_objects(self) -> None:
        """Refuse an expression whose ``obj_id`` the split's ``meta.json`` does not list for its
        video (cheap: no PNG is read). Videos that file does not list are checked against their
        decoded annotations by :meth:`ground_truth` instead."""
        listed = self._listed_objects
        if listed is None:
            return
        for vid, (_, exps) in self.meta.videos.items():
            known = listed.get(vid)
            if known is None:
                continue
            for exp in exps:
                for obj_id in exp.obj_ids or ():
                    if obj_id not in known:
                        self._unknown_object(vid, exp, obj_id, f"not listed in {self.objects_path}")

    def _labels(self, video_id: str) -> np.ndarray:
        """The video's annotations as ``T x H x W uint8`` ids; the last video's are kept, since
        its expressions are usually asked for one after another."""
        cached = getattr(self, "_labels_cache", None)
        if cached is not None and cached[0] == video_id:
            return cached[1]
        video = self.video(video_id)
        labels: list[np.ndarray] = []
        for fid in video.frame_ids:
            path = self.annotation_root / video_id / f"{fid}.png"
            lab = read_index_png(path)
            if labels and lab.shape != labels[0].shape:
                raise InputFileError(
                    f"video {video_id}: annotation {path} is {lab.shape[0]}x{lab.shape[1]}, the "
                    f"first is {labels[0].shape[0]}x{labels[0].shape[1]}"
                )
            labels.append(lab)
        stacked = np.stack(labels)
        self._labels_cache = (video_id, stacked)
        return stacked

    def ground_truth(self, video_id: str, exp_id: str) -> np.ndarray | None:
        exp = self.expression(video_id, exp_id)
        if exp.obj_ids is None or not self.annotation_root.is_dir():
            return None
        labels = self._labels(video_id)
        listed = self._listed_objects
        if listed is None or video_id not in listed:  # not checked when opening: check here
            for obj_id in exp.obj_ids:
                if not (0 <= obj_id <= np.iinfo(labels.dtype).max) or not np.any(labels == obj_id):
                    where = self.annotation_root / video_id
                    self._unknown_object(video_id, exp, obj_id, f"none of the PNGs in {where}")
        return np.isin(labels, np.asarray(exp.obj_ids, dtype=labels.dtype))


class DAVISDataset(YTVOSDataset):
    """Ref-DAVIS17 in the converted Ref-YouTube-VOS layout (no valid-minus-test rule)."""

    format = "davis"
    subtract_test = False


class MeViSDataset(RVOSDataset):
    """MeViS: ``ROOT/<split>/{JPEGImages, meta_expressions.json, mask_dict.json}``."""

    format = "mevis"

    def __init__(self, root: str | Path, split: str) -> None:
        root = Path(root)
        meta_path = root / split / "meta_expressions.json"
        if not meta_path.is_file():
            raise InputFileError(f"no mevis split {split!r} under {root}: {meta_path} is missing")
        super().__init__(root, split, read_split_meta(meta_path), root / split / "JPEGImages")
        self.mask_dict_path = root / split / "mask_dict.json"

    @property
    def has_ground_truth(self) -> bool:
        return self.mask_dict_path.is_file()

    @functools.cached_property
    def _mask_dict(self) -> Mapping[str, list[Any]]:
        data = read_json(self.mask_dict_path)
        if not isinstance(data, dict):
            raise InputFileError(f"{self.mask_dict_path}: expected an object of anno_id -> RLEs")
        return data

    def ground_truth(self, video_id: str, exp_id: str) -> np.ndarray | None:
        from pipeline.core.masks.rle import COLUMN_MAJOR, decode_masks

        exp = self.expression(video_id, exp_id)
        if not self.has_ground_truth or exp.anno_ids is None:
            return None
        video = self.video(video_id)
        T = video.num_frames
        out: np.ndarray | None = None
        for anno in exp.anno_ids:
            rles = self._mask_dict.get(anno)
            if rles is None:
                raise InputFileError(
                    f"{self.mask_dict_path}: no anno_id {anno} "
                    f"(video {video_id}, expression {exp_id})"
                )
            if len(rles) != T:
                raise InputFileError(
                    f"{self.mask_dict_path}: anno_id {anno} has {len(rles)} frames, video "
                    f"{video_id} lists {T}"
                )
            for k, rle in enumerate(rles):
                if not rle:  # null (or an empty entry): absent, as eval_mevis.py's `if mask_rle`
                    continue
                size = (int(rle["size"][0]), int(rle["size"][1]))
                m = decode_masks([rle["counts"]], size, COLUMN_MAJOR)[0]
                if out is None:
                    out = np.zeros((T, *m.shape), bool)
                out[k] |= m
        if out is None:  # nothing in any frame: the frame size comes from the JPEG header
            out = np.zeros((T, *video.size), bool)
        return out


_READERS: dict[str, type[RVOSDataset]] = {
    "ytvos": YTVOSDataset,
    "mevis": MeViSDataset,
    "davis": DAVISDataset,
}


def open_dataset(format: str, root: str | Path, split: str) -> RVOSDataset:
    """Open a split of a dataset in ``format`` ("ytvos", "mevis" or "davis") under ``root``."""
    try:
        reader = _READERS[format]
    except KeyError:
        raise UserError(f"unknown dataset format {format!r}; known: {', '.join(FORMATS)}") from None
    return reader(root, split)  # type: ignore[call-arg]
