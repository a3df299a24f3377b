"""A synthetic referring-video benchmark in Ref-YouTube-VOS's own layout, with ground truth.

Each video shows a few textured shapes of several colours and sizes moving over a textured,
slowly panning background, behind static occluding bars, with objects entering and leaving the
view and look-alike distractors (same colour or same shape; some unannotated "clutter" shapes).
Every annotated object gets two expressions, a long and a short one with consecutive ids (like
Ref-YouTube-VOS pairs), that refer by colour, shape, size, motion, entering/leaving and position
relative to look-alikes; about a third of the videos drop one expression, so their count is odd.
Every expression is checked to match exactly one object of the video, clutter included.

Layout written under ``root`` for each split (train, valid, test)::

    <split>/JPEGImages/<video>/<frame>.jpg     frames "00000", "00005", ... (every 5th, as YTVOS)
    <split>/Annotations/<video>/<frame>.png    palette PNG, pixel value = object id
    <split>/meta.json                          {"videos": {v: {"objects": {id: {category,
                                                                                frames}}}}}
    <split>/objects.json                       each object's attributes (for error analysis)
    meta_expressions/<split>/meta_expressions.json   {"videos": {v: {"expressions": {e: {exp,
                                                      obj_id}}, "frames": [...]}}}
    vocabulary.txt                             every word an expression can use, one per line
    synth.json                                 the generation parameters

Generation is deterministic from the seed: each video draws from its own random stream, so any
video can be regenerated alone and the output is identical for any number of workers.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.core.data.synth_draw import COLOURS, SHAPES, render_scene
from pipeline.core.errors import UserError
from pipeline.core.io import (
    atomic_write_json,
    atomic_write_text,
    encode_index_png,
    encode_jpeg,
    read_json,
    staging_dir,
)

SPLITS = ("train", "valid", "test")
DEFAULT_VIDEOS = {"train": 64, "valid": 16, "test": 16}
# (H, W) frame sizes, short side 120-240 px so that models can train on a CPU.
DEFAULT_SIZES = ((120, 160), (120, 216), (144, 192), (144, 256), (180, 240), (180, 320), (240, 320))
MIN_FRAMES, MAX_FRAMES = 8, 40
FRAME_STEP = 5  # frame ids "00000", "00005", ... as Ref-YouTube-VOS lists them
FORMAT_VERSION = 1

SIZES = {"small": (0.07, 0.095), "big": (0.14, 0.18)}  # radius as a fraction of the short side
MOTIONS = ("left", "right", "up", "down", "still")
EVENTS = ("entering", "leaving")
POSITIONS = ("left", "right", "top", "bottom")

# Attributes an expression may name; position is resolved among the objects the others match.
CATEGORICAL = ("colour", "shape", "size", "motion", "event")

MOTION_SHORT = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "still": "not moving",
}
MOTION_LONG = {
    "left": "moving to the left",
    "right": "moving to the right",
    "up": "moving upwards",
    "down": "moving downwards",
    "still": "standing still",
}
EVENT_SHORT = {"entering": "coming in", "leaving": "going out"}
EVENT_LONG = {"entering": "that comes into view", "leaving": "that goes out of view"}
POSITION_SHORT = {"left": "left", "right": "right", "top": "top", "bottom": "bottom"}
POSITION_LONG = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}


def synthetic_vocabulary() -> list[str]:
    """Every word an expression of the synthetic benchmark can contain, sorted."""
    words = {"a", "the", "object", *COLOURS, *SHAPES, *SIZES}
    for table in (
        MOTION_SHORT,
        MOTION_LONG,
        EVENT_SHORT,
        EVENT_LONG,
        POSITION_SHORT,
        POSITION_LONG,
    ):
        for phrase in table.values():
            words.update(phrase.split())
    return sorted(words)


def video_id(seed: int, split: str, index: int, namespace: str = "lsvos-synth") -> str:
    """A Ref-YouTube-VOS-like 10-hex-digit id, stable for (namespace, seed, split, index)."""
    return hashlib.sha1(f"{namespace}:{seed}:{split}:{index}".encode()).hexdigest()[:10]


# --------------------------------------------------------------------------------------------
# scene description


@dataclass
class SceneObject:
    """One shape's appearance and trajectory (centre ``x(t), y(t)`` in pixels)."""

    colour: str
    shape: str
    size: str
    motion: str
    radius: float
    start: tuple[float, float]
    end: tuple[float, float]
    wobble: tuple[float, float, float]  # amplitude (px), period (frames), phase
    spin: tuple[float, float]  # rotation amplitude (degrees), phase
    depth: float
    texture: str
    annotated: bool = True
    obj_id: int = 0  # 1.. for annotated objects, 0 for clutter
    event: str | None = None
    frames_visible: list[int] = field(default_factory=list)

    def centre(self, t: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        u = t / max(num_frames - 1, 1)
        amp, period, phase = self.wobble
        x = self.start[0] + (self.end[0] - self.start[0]) * u
        y = self.start[1] + (self.end[1] - self.start[1]) * u
        w = amp * np.sin(2 * np.pi * t / period + phase)
        # wobble across the direction of motion only, so "moving left" stays true
        if self.motion in ("left", "right"):
            y = y + w
        elif self.motion in ("up", "down"):
            x = x + w
        else:
            x, y = x + w, y + 0.5 * amp * np.cos(2 * np.pi * t / period + phase)
        return x, y

    def attributes(self) -> dict[str, str | None]:
        return {
            "colour": self.colour,
            "shape": self.shape,
            "size": self.size,
            "motion": self.motion,
            "event": self.event,
        }


@dataclass
class SyntheticVideo:
    """A rendered video: frames ``T x H x W x 3 uint8``, labels ``T x H x W uint8``."""

    video_id: str
    frames: np.ndarray
    labels: np.ndarray
    objects: list[SceneObject]
    expressions: list[tuple[str, int]]  # (text, obj_id) in expression-id order

    @property
    def frame_ids(self) -> list[str]:
        return [f"{FRAME_STEP * i:05d}" for i in range(self.frames.shape[0])]


def _sample_object(
    rng: np.random.Generator, H: int, W: int, existing: Sequence[SceneObject]
) -> SceneObject:
    short = min(H, W)
    # look-alike distractors: reuse an existing colour or shape often
    if existing and rng.random() < 0.45:
        colour = existing[rng.integers(len(existing))].colour
    else:
        colour = str(rng.choice(list(COLOURS)))
    if existing and rng.random() < 0.4:
        shape = existing[rng.integers(len(existing))].shape
    else:
        shape = str(rng.choice(SHAPES))
    size = "big" if rng.random() < 0.45 else "small"
    radius = float(rng.uniform(*SIZES[size]) * short)
    motion = str(rng.choice(MOTIONS, p=[0.22, 0.22, 0.17, 0.17, 0.22]))
    start, end = _sample_path(rng, H, W, radius, motion)
    wobble = (
        float(rng.uniform(0.0, 0.03) * short),
        float(rng.uniform(6, 20)),
        float(rng.uniform(0, 2 * np.pi)),
    )
    spin = (float(rng.uniform(0, 12)), float(rng.uniform(0, 2 * np.pi)))
    texture = str(rng.choice(["flat", "stripes", "noise", "spots"]))
    return SceneObject(
        colour, shape, size, motion, radius, start, end, wobble, spin, float(rng.random()), texture
    )


def _sample_path(
    rng: np.random.Generator, H: int, W: int, r: float, motion: str
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and end centres; moving objects may start or end outside the frame."""
    if motion == "still":
        p = (float(rng.uniform(r, W - r)), float(rng.uniform(r, H - r)))
        return p, p
    horizontal = motion in ("left", "right")
    extent, other = (W, H) if horizontal else (H, W)
    kind = rng.choice(["inside", "entering", "leaving"], p=[0.5, 0.25, 0.25])
    outside = -r * 1.15
    if kind == "entering":
        a, b = outside - rng.uniform(0, 0.3) * extent, rng.uniform(0.35, 0.9) * extent
    elif kind == "leaving":
        a, b = rng.uniform(0.1, 0.65) * extent, extent - outside + rng.uniform(0, 0.3) * extent
    else:
        length = rng.uniform(0.3, 0.75) * (extent - 2 * r)
        a = rng.uniform(r, extent - r - length)
        b = a + length
    if motion in ("left", "up"):  # paths above run forward; mirror them
        a, b = extent - a, extent - b
    c0 = rng.uniform(r, other - r)
    c1 = float(np.clip(c0 + rng.uniform(-0.2, 0.2) * other, r, other - r))
    # the cross drift stays well below the main displacement, so the direction word holds
    c1 = c0 + np.clip(c1 - c0, -0.35 * abs(b - a), 0.35 * abs(b - a))
    if horizontal:
        return (float(a), float(c0)), (float(b), float(c1))
    return (float(c0), float(a)), (float(c1), float(b))


# --------------------------------------------------------------------------------------------
# drawing (the pixels: pipeline.core.data.synth_draw)


def _in_view(obj: SceneObject, x: float, y: float, H: int, W: int) -> bool:
    """Whether any part of the object's disc lies inside the frame (occlusion ignored)."""
    r = obj.radius * 0.9
    return x + r > 0 and x - r < W and y + r > 0 and y - r < H


def _render(
    rng: np.random.Generator, H: int, W: int, T: int, objects: list[SceneObject]
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the video (see :func:`render_scene`) and mark who enters or leaves the view."""
    t = np.arange(T, dtype=np.float64)
    centres = [o.centre(t, T) for o in objects]
    frames, labels = render_scene(rng, H, W, T, objects, centres)
    for i, obj in enumerate(objects):
        inside = [_in_view(obj, centres[i][0][k], centres[i][1][k], H, W) for k in range(T)]
        if not inside[0] and any(inside):
            obj.event = "entering"
        elif inside[0] and not inside[-1]:
            obj.event = "leaving"
    return frames, labels


# --------------------------------------------------------------------------------------------
# expressions


def _matches(obj: SceneObject, attrs: Mapping[str, str | None]) -> bool:
    return all(getattr(obj, k) == v for k, v in attrs.items())


def _extreme(obj: SceneObject, group: Sequence[SceneObject], T: int, H: int, W: int) -> list[str]:
    """Positions (left/right/top/bottom) where ``obj`` beats every other member in all frames."""
    t = np.arange(T, dtype=np.float64)
    x, y = obj.centre(t, T)
    found = []
    for pos in POSITIONS:
        ok = True
        for other in group:
            if other is obj:
                continue
            ox, oy = other.centre(t, T)
            gap = {"left": ox - x, "right": x - ox, "top": oy - y, "bottom": y - oy}[pos]
            limit = 0.08 * (W if pos in ("left", "right") else H)
            if not (gap > limit).all():
                ok = False
                break
        if ok:
            found.append(pos)
    return found


def _descriptions(
    obj: SceneObject, objects: Sequence[SceneObject], T: int, H: int, W: int
) -> list[tuple[int, tuple[str, ...], str | None]]:
    """Every attribute subset (plus an optional position) that picks ``obj`` alone.

    Returns ``(cost, attribute names, position)`` triples; cost = number of words of meaning.
    """
    names = [k for k in CATEGORICAL if obj.attributes()[k] is not None]
    out = []
    for n in range(0, len(names) + 1):
        for subset in itertools.combinations(names, n):
            attrs = {k: obj.attributes()[k] for k in subset}
            group = [o for o in objects if _matches(o, attrs)]
            if len(group) == 1 and n > 0:
                out.append((n, subset, None))
            elif len(group) > 1:
                for pos in _extreme(obj, group, T, H, W):
                    out.append((n + 1, subset, pos))
    return out


def _phrase(
    obj: SceneObject, subset: Sequence[str], pos: str | None, long: bool, article: str
) -> str:
    words = [article]
    if pos is not None and not long:
        words.append(POSITION_SHORT[pos])
    if "size" in subset:
        words.append(obj.size)
    if "colour" in subset:
        words.append(obj.colour)
    words.append(obj.shape if "shape" in subset else "object")
    if "motion" in subset:
        words.append((MOTION_LONG if long else MOTION_SHORT)[obj.motion])
    if "event" in subset and obj.event is not None:
        words.append((EVENT_LONG if long else EVENT_SHORT)[obj.event])
    if pos is not None and long:
        words.append(POSITION_LONG[pos])
    return " ".join(words)


def _expressions_for(
    rng: np.random.Generator,
    obj: SceneObject,
    objects: Sequence[SceneObject],
    T: int,
    H: int,
    W: int,
) -> tuple[str, str] | None:
    """(long, short) expressions for ``obj``, or ``None`` when it cannot be singled out."""
    options = _descriptions(obj, objects, T, H, W)
    if not options:
        return None
    cheapest = min(c for c, _, _ in options)
    short_options = [o for o in options if o[0] == cheapest]
    _, s_subset, s_pos = short_options[rng.integers(len(short_options))]
    # the long one names colour, size, shape and motion, plus what it takes to be unique
    full = ("colour", "shape", "size", "motion")
    long_options = [o for o in options if set(full) <= set(o[1])]
    if not long_options:
        return None
    long_options.sort(key=lambda o: (o[0], o[2] is not None))
    _, l_subset, l_pos = long_options[0]
    if obj.event is not None and "event" not in l_subset and rng.random() < 0.5:
        l_subset = (*l_subset, "event")
    long = _phrase(obj, l_subset, l_pos, True, str(rng.choice(["a", "the"])))
    short = _phrase(obj, s_subset, s_pos, False, "the")
    return long, short


# --------------------------------------------------------------------------------------------
# one video


def generate_video(seed: int, split: str, index: int, size: tuple[int, int]) -> SyntheticVideo:
    """Render video ``index`` of ``split`` (deterministic for its arguments)."""
    split_no = SPLITS.index(split) if split in SPLITS else len(SPLITS)
    rng = np.random.default_rng([seed, split_no, index])
    H, W = size
    for _attempt in range(50):
        T = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
        n_annotated = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.2, 0.15]))
        n_clutter = int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2]))
        objects: list[SceneObject] = []
        for i in range(n_annotated + n_clutter):
            obj = _sample_object(rng, H, W, objects)
            obj.annotated = i < n_annotated
            obj.obj_id = i + 1 if obj.annotated else 0
            objects.append(obj)
        frames, labels = _render(rng, H, W, T, objects)
        video = _finish(rng, seed, split, index, frames, labels, objects)
        if video is not None:
            return video
    raise RuntimeError(f"could not build video {index} of {split} (seed {seed})")


def _finish(rng, seed, split, index, frames, labels, objects) -> SyntheticVideo | None:
    """Check visibility and uniqueness, then write the expressions; ``None`` to resample."""
    T, H, W = labels.shape
    min_area = max(12, int(0.0015 * H * W))
    counts = np.stack([np.bincount(labels[k].ravel(), minlength=256) for k in range(T)])
    expressions: list[tuple[str, int]] = []
    for obj in objects:
        if not obj.annotated:
            continue
        visible = np.nonzero(counts[:, obj.obj_id] >= min_area)[0]
        if len(visible) < max(2, T // 4):
            return None
        obj.frames_visible = [int(k) for k in np.nonzero(counts[:, obj.obj_id] > 0)[0]]
        pair = _expressions_for(rng, obj, objects, T, H, W)
        if pair is None:
            return None
        expressions.append((pair[0], obj.obj_id))
        expressions.append((pair[1], obj.obj_id))
    if rng.random() < 0.3:  # an odd number of expressions: the last object keeps one
        drop = len(expressions) - (1 if rng.random() < 0.5 else 2)
        expressions.pop(drop)
    return SyntheticVideo(video_id(seed, split, index), frames, labels, objects, expressions)


# --------------------------------------------------------------------------------------------
# writing a benchmark


def parse_size(text: str) -> tuple[tuple[int, int], ...]:
    """``"720x1280"`` (H x W) forces one size; ``"720"`` scales the default sizes' short side."""
    try:
        if "x" in text:
            h, w = (int(v) for v in text.lower().split("x"))
            if h < 32 or w < 32:
                raise ValueError
            return ((h, w),)
        short = int(text)
        if short < 32:
            raise ValueError
    except ValueError as err:
        raise UserError(f"--size {text!r}: use HxW (e.g. 720x1280) or a short side >= 32") from err
    out = []
    for h, w in DEFAULT_SIZES:
        s = short / min(h, w)
        out.append((2 * round(h * s / 2), 2 * round(w * s / 2)))
    return tuple(dict.fromkeys(out))


def video_size(
    seed: int, split: str, index: int, sizes: Sequence[tuple[int, int]]
) -> tuple[int, int]:
    """The ``(H, W)`` of video ``index`` of ``split``: one of ``sizes``, stable for its key."""
    pick = int(hashlib.sha1(f"size:{seed}:{split}:{index}".encode()).hexdigest(), 16)
    return tuple(sizes[pick % len(sizes)])


def _write_video(args: tuple[Path, int, str, int, tuple[int, int], int]) -> dict:
    root, seed, split, index, size, quality = args
    vid = video_id(seed, split, index)
    jpeg_dir = root / split / "JPEGImages" / vid
    anno_dir = root / split / "Annotations" / vid
    record_path = root / ".synth-records" / split / f"{vid}.json"
    if anno_dir.is_dir() and jpeg_dir.is_dir() and record_path.is_file():
        return read_json(record_path)  # done by an earlier, interrupted run
    video = generate_video(seed, split, index, size)
    with staging_dir(jpeg_dir) as tmp:
        for fid, frame in zip(video.frame_ids, video.frames, strict=True):
            (tmp / f"{fid}.jpg").write_bytes(encode_jpeg(frame, quality))
    with staging_dir(anno_dir) as tmp:
        for fid, lab in zip(video.frame_ids, video.labels, strict=True):
            (tmp / f"{fid}.png").write_bytes(encode_index_png(lab))
    record = _video_record(video)
    atomic_write_json(record_path, record)
    return record


def _video_record(video: SyntheticVideo) -> dict:
    fids = video.frame_ids
    annotated = [o for o in video.objects if o.annotated]
    return {
        "video": video.video_id,
        "frames": fids,
        "size": [int(video.frames.shape[1]), int(video.frames.shape[2])],
        "expressions": {
            str(i): {"exp": text, "obj_id": str(obj_id)}
            for i, (text, obj_id) in enumerate(video.expressions)
        },
        "objects": {
            str(o.obj_id): {"category": o.shape, "frames": [fids[k] for k in o.frames_visible]}
            for o in annotated
        },
        "attributes": [
            {
                "obj_id": o.obj_id,
                "annotated": o.annotated,
                **o.attributes(),
                "texture": o.texture,
                "radius": round(o.radius, 2),
                "depth": round(o.depth, 3),
            }
            for o in video.objects
        ],
    }


def claim_root(root: Path, params: Mapping[str, object]) -> None:
    """Make ``root`` the home of a synthetic benchmark made with ``params`` (its ``synth.json``).

    A ``root`` already made with the same parameters is accepted (to resume or rewrite it);
    one made with other parameters, or a non-empty folder holding none, is refused.
    """
    params_path = root / "synth.json"
    if params_path.is_file():
        if read_json(params_path) != dict(params):
            raise UserError(
                f"{root} holds a synthetic benchmark made with other parameters "
                f"({params_path}); choose an empty folder"
            )
    elif root.exists() and any(root.iterdir()):
        raise UserError(
            f"{root} is not empty and holds no synthetic benchmark; choose a new folder"
        )
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(params_path, dict(params), indent=2)


def split_counts(
    videos: int | Mapping[str, int] | None, splits: Sequence[str], defaults: Mapping[str, int]
) -> dict[str, int]:
    """Videos per split: one number for every split, a mapping per split, or ``defaults``
    (16 for a split they do not name); every split needs at least one."""
    if videos is None:
        counts = {s: defaults.get(s, 16) for s in splits}
    elif isinstance(videos, int):
        counts = {s: int(videos) for s in splits}
    else:
        counts = {s: int(videos[s]) for s in splits}
    if any(n < 1 for n in counts.values()):
        raise UserError(f"every split needs at least one video, got {counts}")
    return counts


def write_videos(
    write: Callable[[tuple], dict], jobs: list[tuple], workers: int, chunksize: int
) -> list[dict]:
    """``write`` over ``jobs`` (one video each), in ``workers`` processes when more than one;
    the records in job order (each video's bytes depend only on its job)."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(write, jobs, chunksize=chunksize))
    return [write(job) for job in jobs]


@dataclass(frozen=True)
class SynthParams:
    seed: int
    videos: dict[str, int]
    sizes: list[list[int]]
    jpeg_quality: int
    version: int = FORMAT_VERSION


def write_synthetic_benchmark(
    root: str | Path,
    seed: int = 0,
    videos: int | Mapping[str, int] | None = None,
    *,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    splits: Sequence[str] = SPLITS,
    jpeg_quality: int = 90,
    workers: int = 1,
) -> Path:
    """Write the synthetic benchmark under ``root`` and return ``root``.

    ``videos``: videos per split, one number for every split or a mapping per split (default
    :data:`DEFAULT_VIDEOS`: 64 train, 16 valid, 16 test). ``sizes``: the ``(H, W)`` frame sizes
    a video is drawn from. An interrupted run resumes: videos already written are kept. A
    ``root`` holding a benchmark made with other parameters is refused.
    """
    root = Path(root)
    counts = split_counts(videos, splits, DEFAULT_VIDEOS)
    params = SynthParams(seed, counts, [list(s) for s in sizes], int(jpeg_quality))
    claim_root(root, asdict(params))
    atomic_write_text(root / "vocabulary.txt", "\n".join(synthetic_vocabulary()) + "\n")
    for split in splits:
        jobs = [
            (root, seed, split, i, video_size(seed, split, i, sizes), jpeg_quality)
            for i in range(counts[split])
        ]
        _write_split_metas(root, split, write_videos(_write_video, jobs, workers, chunksize=4))
    return root


def _write_split_metas(root: Path, split: str, records: list[dict]) -> None:
    records = sorted(records, key=lambda r: r["video"])
    meta_expressions = {
        "videos": {
            r["video"]: {"expressions": r["expressions"], "frames": r["frames"]} for r in records
        }
    }
    meta = {"videos": {r["video"]: {"objects": r["objects"]} for r in records}}
    objects = {r["video"]: {"size": r["size"], "objects": r["attributes"]} for r in records}
    atomic_write_json(root / split / "meta.json", meta)
    atomic_write_json(root / split / "objects.json", objects)
    atomic_write_json(root / "meta_expressions" / split / "meta_expressions.json", meta_expressions)
