"""A synthetic MeViS-style benchmark: motion expressions, several targets, identical look-alikes.

Each video shows 3-6 textured shapes over a textured background (the drawing of
:mod:`pipeline.core.data.synth_draw`; no camera pan, so "still" means still in the scene).
Objects follow piecewise-linear paths: standing still, moving in one direction, stopping,
starting, turning back, leaving or entering the view, moving together in a formation, or
swapping places along two arcs. Four videos in five hold a group of 2-3 identical look-alikes
(same colour, shape, size and texture) told apart only by how they move; the fifth, three
shapes of one colour moving together beside a fourth of that colour.

Expressions come in two kinds. *Appearance* expressions ("the blue star", "the two red
circles", "the three green objects") are solved by any single frame. *Motion* expressions
("the red circle that turns back", "the two squares moving together", "the object that stops",
"the three orange objects moving together") name an appearance that several objects share and
a motion that only the targets perform, so no single frame can resolve them. An expression may
refer to one, two or three objects; its ground truth is the union of their masks. Every
expression is checked against the objects' actual paths (:mod:`pipeline.core.data.synth_motion`
reads what each path does back from it, not from the plan), so it holds for its targets and for
no other object.

Layout written under ``root`` (MeViS's own; datasets.md section 2)::

    <split>/JPEGImages/<video>/<frame>.jpg     frames "00000", "00001", ... (every frame)
    <split>/meta_expressions.json               {"videos": {v: {"expressions": {e: {exp,
                                                 obj_id: [int], anno_id: [str]}}, "frames"}}}
    <split>/mask_dict.json                      {anno_id: [COCO RLE {size, counts} | null]}
    <split>/objects.json                        objects and expression kinds (error analysis)
    vocabulary.txt, synth.json                  the words; the generation parameters

for splits ``train`` and ``valid_u``; ``valid`` has frames and ``{"exp"}``-only expressions,
as MeViS's server split. Deterministic from the seed: each video draws from its own stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.data.synth import (
    DEFAULT_SIZES,
    claim_root,
    split_counts,
    video_id,
    video_size,
    write_videos,
)
from pipeline.core.data.synth_draw import COLOURS, SHAPES, TEXTURES, render_scene
from pipeline.core.data.synth_motion import (
    DIRECTIONS,
    MIN_PHASE,
    OPPOSITE,
    MotionObject,
    SynthExpression,
    choose_expressions,
    mevis_vocabulary,
    motion_facts,
    wholly_inside,
    wholly_outside,
)
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_write_json, atomic_write_text, encode_jpeg, staging_dir
from pipeline.core.masks.rle import COLUMN_MAJOR, encode_masks

SPLITS = ("train", "valid_u", "valid")
GT_SPLITS = ("train", "valid_u")  # valid: frames and expressions only, as MeViS's
DEFAULT_VIDEOS = {"train": 24, "valid_u": 8, "valid": 8}
MIN_FRAMES, MAX_FRAMES = 12, 20
FORMAT_VERSION = 1
NAMESPACE = "lsvos-synth-mevis"
# one per video in turn, so any five consecutive videos hold every kind of scene
TEMPLATES = ("pair", "triple", "together", "swap", "trio")
SOLO = ("still", "moves", "stops", "starts", "turns", "leaves", "enters")


# --------------------------------------------------------------------------------------------
# scenes


@dataclass
class MeViSVideo:
    """A rendered video: frames ``T x H x W x 3 uint8``, labels ``T x H x W uint8`` (obj ids)."""

    video_id: str
    frames: np.ndarray
    labels: np.ndarray
    objects: list[MotionObject]
    expressions: list[SynthExpression]

    @property
    def frame_ids(self) -> list[str]:
        return [f"{i:05d}" for i in range(self.frames.shape[0])]


def _new_object(
    rng: np.random.Generator, colour: str, shape: str, look: int, behaviour: str, short: int
) -> MotionObject:
    return MotionObject(
        colour,
        shape,
        float(rng.uniform(0.07, 0.11) * short),
        str(rng.choice(TEXTURES)),
        (float(rng.uniform(0, 10)), float(rng.uniform(0, 2 * np.pi))),
        float(rng.random()),
        look,
        behaviour,
        str(rng.choice(list(DIRECTIONS))),
    )


def _lookalikes(
    rng: np.random.Generator, colour: str, shape: str, behaviours: Sequence[str], short: int
) -> list[MotionObject]:
    """Identical objects (one radius, texture and spin), one per behaviour."""
    first = _new_object(rng, colour, shape, 0, behaviours[0], short)
    group = [first]
    for behaviour in behaviours[1:]:
        twin = _new_object(rng, colour, shape, 0, behaviour, short)
        twin.radius, twin.texture, twin.spin = first.radius, first.texture, first.spin
        group.append(twin)
    return group


def _plan(rng: np.random.Generator, template: str, short: int) -> list[MotionObject]:
    """The objects of a scene of ``template`` (see :data:`TEMPLATES`), before placement."""
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    shapes = [str(s) for s in rng.permutation(list(SHAPES))]
    colour, shape = colours.pop(), shapes.pop()

    def pick(n: int) -> list[str]:
        return [str(b) for b in rng.choice(SOLO, n, replace=False)]

    if template == "pair":
        objects = _lookalikes(rng, colour, shape, pick(2), short)
    elif template == "triple":
        behaviours = pick(3)
        if rng.random() < 0.5:  # two of them do the same: a two-target motion expression
            behaviours[1] = behaviours[0] = str(rng.choice(["still", "stops", "starts", "turns"]))
        objects = _lookalikes(rng, colour, shape, behaviours, short)
    elif template == "together":
        third = str(rng.choice(["still", "stops", "starts", "turns"]))
        objects = _lookalikes(rng, colour, shape, ["together", "together", third], short)
    elif template == "swap":
        behaviours = ["swap", "swap"] + (["still"] if rng.random() < 0.5 else [])
        objects = _lookalikes(rng, colour, shape, behaviours, short)
    else:  # trio: three shapes of one colour in formation, and a fourth of that colour
        objects = [
            _new_object(rng, colour, shapes.pop(), i + 1, "together", short) for i in range(3)
        ]
        fourth = str(rng.choice(["still", "stops", "starts", "turns"]))
        objects.append(_new_object(rng, colour, shapes.pop(), 4, fourth, short))
    formation = [o for o in objects if o.behaviour == "together"]
    for obj in formation:
        obj.direction = formation[0].direction
    for i in range(int(rng.integers(1, 3))):  # distinct extras, one colour and shape each
        extra = _new_object(rng, colours.pop(), shapes.pop(), 10 + i, pick(1)[0], short)
        if formation and extra.behaviour == "moves" and extra.direction == formation[0].direction:
            extra.direction = OPPOSITE[extra.direction]  # not a member of the formation
        objects.append(extra)
    return objects


def _steps(obj: MotionObject, T: int, speed: float, switch: int) -> np.ndarray:
    """Per-step displacements (``(T - 1) x 2``) of a solo or formation behaviour."""
    u = np.asarray(DIRECTIONS[obj.direction]) * speed
    steps = np.zeros((T - 1, 2))
    before = np.arange(T - 1) < switch
    if obj.behaviour in ("moves", "together", "leaves", "enters"):
        steps[:] = u
    elif obj.behaviour == "stops":
        steps[before] = u
    elif obj.behaviour == "starts":
        steps[~before] = u
    elif obj.behaviour == "turns":
        steps[before], steps[~before] = u, -u
    return steps


def _fits(obj: MotionObject, H: int, W: int) -> bool:
    inside, outside = wholly_inside(obj, H, W), wholly_outside(obj, H, W)
    if obj.behaviour == "leaves":
        return bool(inside[: MIN_PHASE + 1].all() and outside[-2:].all())
    if obj.behaviour == "enters":
        return bool(outside[:2].all() and inside[-MIN_PHASE - 1 :].all())
    return bool(inside.all())


def _apart(a: MotionObject, b: MotionObject, H: int, W: int) -> bool:
    """Whether ``a`` and ``b`` never touch while both are (partly) in view."""
    assert a.path is not None and b.path is not None
    seen = ~wholly_outside(a, H, W) & ~wholly_outside(b, H, W)
    gap = np.hypot(*(a.path - b.path).T)[seen]
    return bool((gap >= a.radius + b.radius + 3).all())


def _place(rng: np.random.Generator, objects: list[MotionObject], H: int, W: int, T: int) -> bool:
    """Give every object a path that fits its behaviour and touches no other; ``False`` when
    some object found no room."""
    short = min(H, W)
    speed = float(rng.uniform(0.022, 0.034) * short)  # the formation's; others vary around it
    swappers = [o for o in objects if o.behaviour == "swap"]
    formation = [o for o in objects if o.behaviour == "together"]
    placed: list[MotionObject] = []
    if swappers:
        if not _place_swap(rng, swappers[0], swappers[1], H, W, T):
            return False
        placed += swappers[:2]
    for obj in objects:
        if obj in placed:
            continue
        switch = int(rng.integers(round(0.35 * (T - 1)), round(0.65 * (T - 1)) + 1))
        own = speed if obj.behaviour == "together" else speed * float(rng.uniform(0.8, 1.2))
        if obj.behaviour in ("leaves", "enters"):
            own *= 2.2
        steps = _steps(obj, T, own, switch)
        offsets = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
        if obj.behaviour == "enters":  # the point drawn is where it ends, in view
            offsets = offsets - offsets[-1]
        for _ in range(200):
            if obj in formation[1:]:  # near the leader, same steps
                lead = formation[0].path
                assert lead is not None
                angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(2.4, 3.6) * obj.radius
                start = lead[0] + dist * np.array([np.cos(angle), np.sin(angle)])
            else:
                start = np.array([rng.uniform(0, W), rng.uniform(0, H)])
            obj.path = start + offsets
            if _fits(obj, H, W) and all(_apart(obj, other, H, W) for other in placed):
                placed.append(obj)
                break
        else:
            return False
    return True


def _place_swap(
    rng: np.random.Generator, a: MotionObject, b: MotionObject, H: int, W: int, T: int
) -> bool:
    """Paths for two objects exchanging places along arcs that pass side by side."""
    u = np.linspace(0.0, 1.0, T)[:, None]
    horizontal = rng.random() < 0.5 + 0.3 * (W > H)
    off = 0.75 * (a.radius + b.radius)
    for _ in range(200):
        p = np.array([rng.uniform(0, W), rng.uniform(0, H)])
        q = p.copy()
        axis, other = (0, 1) if horizontal else (1, 0)
        extent = (W, H)[axis]
        q[axis] = p[axis] + rng.choice([-1, 1]) * rng.uniform(0.45, 0.7) * extent
        normal = np.zeros(2)
        normal[other] = off
        bend = np.sin(np.pi * u) * normal
        a.path = p + (q - p) * u + bend
        b.path = q + (p - q) * u - bend
        if _fits(a, H, W) and _fits(b, H, W) and _apart(a, b, H, W):
            return True
    return False


# --------------------------------------------------------------------------------------------
# one video


def generate_video(seed: int, split: str, index: int, size: tuple[int, int]) -> MeViSVideo:
    """Render video ``index`` of ``split`` (deterministic for its arguments)."""
    split_no = SPLITS.index(split) if split in SPLITS else len(SPLITS)
    rng = np.random.default_rng([seed, 0x6D657669, split_no, index])
    H, W = size
    template = TEMPLATES[index % len(TEMPLATES)]
    for _attempt in range(50):
        T = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
        objects = _plan(rng, template, min(H, W))
        if not _place(rng, objects, H, W, T):
            continue
        for i, k in enumerate(rng.permutation(len(objects))):  # ids in no telling order
            objects[k].obj_id = i + 1
        objects.sort(key=lambda o: o.obj_id)
        expressions = choose_expressions(rng, objects, H, W)
        if not any(e.kind == "motion" for e in expressions):
            continue
        centres = [o.centres() for o in objects]
        frames, labels = render_scene(
            rng,
            H,
            W,
            T,
            objects,
            centres,
            occluder_counts=(0,),
            pan=0.0,
            looks=[o.look for o in objects],
        )
        return MeViSVideo(
            video_id(seed, split, index, NAMESPACE), frames, labels, objects, expressions
        )
    raise RuntimeError(f"could not build video {index} of {split} (seed {seed})")


# --------------------------------------------------------------------------------------------
# writing a benchmark


def _write_video(args: tuple[Path, int, str, int, tuple[int, int], int]) -> dict:
    """Render one video, write its JPEGs, and return its record (masks as column-major RLE)."""
    root, seed, split, index, size, quality = args
    video = generate_video(seed, split, index, size)
    with staging_dir(root / split / "JPEGImages" / video.video_id) as tmp:
        for fid, frame in zip(video.frame_ids, video.frames, strict=True):
            (tmp / f"{fid}.jpg").write_bytes(encode_jpeg(frame, quality))
    H, W = video.labels.shape[1:]
    masks = {}
    for obj in video.objects:
        stack = video.labels == obj.obj_id
        counts = encode_masks(stack, COLUMN_MAJOR)
        masks[obj.obj_id] = [
            {"size": [int(H), int(W)], "counts": c} if m.any() else None
            for c, m in zip(counts, stack, strict=True)
        ]
    return {
        "video": video.video_id,
        "frames": video.frame_ids,
        "size": [int(H), int(W)],
        "expressions": [vars(e) | {"obj_ids": list(e.obj_ids)} for e in video.expressions],
        "objects": [
            {
                "obj_id": o.obj_id,
                "colour": o.colour,
                "shape": o.shape,
                "look": o.look,
                "behaviour": o.behaviour,
                "facts": sorted(f"{m}:{d}" if d else m for m, d in motion_facts(o, H, W)),
            }
            for o in video.objects
        ],
        "masks": masks,
    }


def _write_split(root: Path, split: str, records: list[dict]) -> None:
    """The split's ``meta_expressions.json``, and for ground-truth splits ``mask_dict.json``
    and ``objects.json``. Anno ids count the split's objects in video-id order."""
    records = sorted(records, key=lambda r: r["video"])
    truth = split in GT_SPLITS
    videos, mask_dict, objects = {}, {}, {}
    next_anno = 0
    for r in records:
        anno = {}
        for obj in r["objects"]:
            anno[obj["obj_id"]] = str(next_anno)
            mask_dict[str(next_anno)] = r["masks"][obj["obj_id"]]
            next_anno += 1
        expressions = {}
        for i, e in enumerate(r["expressions"]):
            entry: dict = {"exp": e["text"]}
            if truth:
                entry["obj_id"] = e["obj_ids"]
                entry["anno_id"] = [anno[o] for o in e["obj_ids"]]
            expressions[str(i)] = entry
        videos[r["video"]] = {"expressions": expressions, "frames": r["frames"]}
        objects[r["video"]] = {
            "size": r["size"],
            "objects": [o | {"anno_id": anno[o["obj_id"]]} for o in r["objects"]],
            "expressions": {
                str(i): {k: e[k] for k in ("kind", "colour", "shape", "motion", "obj_ids")}
                for i, e in enumerate(r["expressions"])
            },
        }
    atomic_write_json(root / split / "meta_expressions.json", {"videos": videos})
    if truth:
        atomic_write_json(root / split / "mask_dict.json", mask_dict)
        atomic_write_json(root / split / "objects.json", objects)


def write_synthetic_mevis_benchmark(
    root: str | Path,
    seed: int = 0,
    videos: int | Mapping[str, int] | None = None,
    *,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    splits: Sequence[str] = SPLITS,
    jpeg_quality: int = 90,
    workers: int = 1,
) -> Path:
    """Write the synthetic MeViS benchmark under ``root`` and return ``root``.

    ``videos``: videos per split, one number for every split or a mapping per split (default
    :data:`DEFAULT_VIDEOS`: 24 train, 8 valid_u, 8 valid). ``sizes``: the ``(H, W)`` frame
    sizes a video is drawn from. A ``root`` made with the same parameters is written again
    (to the same bytes); one made with other parameters, or any other non-empty folder, is
    refused.
    """
    root = Path(root)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise UserError(f"unknown MeViS split(s) {unknown}; known: {', '.join(SPLITS)}")
    counts = split_counts(videos, splits, DEFAULT_VIDEOS)  # splits checked above
    params = {
        "format": "mevis",
        "seed": seed,
        "videos": counts,
        "sizes": [list(s) for s in sizes],
        "jpeg_quality": int(jpeg_quality),
        "version": FORMAT_VERSION,
    }
    claim_root(root, params)
    atomic_write_text(root / "vocabulary.txt", "\n".join(mevis_vocabulary()) + "\n")
    for split in splits:
        jobs = [
            (root, seed, split, i, video_size(seed, split, i, sizes), int(jpeg_quality))
            for i in range(counts[split])
        ]
        _write_split(root, split, write_videos(_write_video, jobs, workers, chunksize=2))
    return root
