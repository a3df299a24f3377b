"""The synthetic MeViS benchmark: MeViS's layout, read and scored by the project's MeViS code,
deterministic, with multi-object and motion-only expressions that no single frame resolves."""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from pipeline.cli import main
from pipeline.core.data import open_dataset
from pipeline.core.data.synth_draw import COLOURS, SHAPES
from pipeline.core.data.synth_mevis import (
    GT_SPLITS,
    SPLITS,
    generate_video,
    write_synthetic_mevis_benchmark,
)
from pipeline.core.data.synth_motion import mevis_vocabulary, plural
from pipeline.core.errors import UserError
from pipeline.core.masks import MaskSet, Track
from pipeline.core.scoring import score_video

SINGULAR = {plural(s): s for s in SHAPES}


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_mevis") / "mevis"
    assert main(["data", "synth", "--format", "mevis", "--out", str(root), "--seed", "2"]) == 0
    return root


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _meta(root: Path, split: str) -> dict:
    return json.loads((root / split / "meta_expressions.json").read_text())["videos"]


def _object_masks(root: Path, split: str, video: str) -> dict[int, np.ndarray]:
    """Each object's ``T x H x W bool`` masks, decoded from mask_dict.json by pycocotools."""
    mask_dict = _read(root / split / "mask_dict.json")
    info = _read(root / split / "objects.json")[video]
    H, W = info["size"]
    out = {}
    for obj in info["objects"]:
        rles = mask_dict[obj["anno_id"]]
        stack = np.zeros((len(rles), H, W), bool)
        present = [k for k, rle in enumerate(rles) if rle is not None]
        coded = [{"size": rles[k]["size"], "counts": rles[k]["counts"].encode()} for k in present]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools under numpy 2
            decoded = coco_mask.decode(coded) if coded else np.zeros((H, W, 0), np.uint8)
        stack[present] = decoded.transpose(2, 0, 1) > 0
        out[obj["obj_id"]] = stack
    return out


@functools.cache
def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_layout_of_mevis(bench_root: Path) -> None:
    assert sorted(p.name for p in bench_root.iterdir()) == sorted(
        [*SPLITS, "synth.json", "vocabulary.txt"]
    )
    assert (bench_root / "vocabulary.txt").read_text().split() == mevis_vocabulary()
    for split in SPLITS:
        meta = _meta(bench_root, split)
        assert len(meta) == {"train": 24, "valid_u": 8, "valid": 8}[split]
        for vid, entry in meta.items():
            frames = entry["frames"]
            assert 12 <= len(frames) <= 20 and frames == [f"{i:05d}" for i in range(len(frames))]
            jpgs = sorted(p.stem for p in (bench_root / split / "JPEGImages" / vid).iterdir())
            assert jpgs == frames
            assert list(entry["expressions"]) == [str(i) for i in range(len(entry["expressions"]))]
            for exp in entry["expressions"].values():
                if split in GT_SPLITS:
                    assert set(exp) == {"exp", "obj_id", "anno_id"}
                    assert all(isinstance(o, int) for o in exp["obj_id"])
                    assert all(isinstance(a, str) for a in exp["anno_id"])
                    assert len(exp["obj_id"]) == len(exp["anno_id"])
                else:
                    assert set(exp) == {"exp"}
                assert set(exp["exp"].split()) <= set(mevis_vocabulary())
    assert not (bench_root / "valid" / "mask_dict.json").exists()
    assert not (bench_root / "valid" / "objects.json").exists()
    for split in GT_SPLITS:
        meta = _meta(bench_root, split)
        mask_dict = json.loads((bench_root / split / "mask_dict.json").read_text())
        annos = [a for e in meta.values() for x in e["expressions"].values() for a in x["anno_id"]]
        assert set(annos) <= set(mask_dict)
        for vid, entry in meta.items():
            size = Image.open(bench_root / split / "JPEGImages" / vid / "00000.jpg").size[::-1]
            for anno in {a for x in entry["expressions"].values() for a in x["anno_id"]}:
                rles = mask_dict[anno]
                assert len(rles) == len(entry["frames"])
                for rle in rles:
                    assert rle is None or (
                        rle["size"] == list(size) and isinstance(rle["counts"], str)
                    )
        assert any(rle is None for rles in mask_dict.values() for rle in rles)  # left the view


def test_reader_opens_every_split_and_unions_the_targets(bench_root: Path) -> None:
    for split in SPLITS:
        ds = open_dataset("mevis", bench_root, split)
        assert len(ds) == len(_meta(bench_root, split))
        assert ds.has_ground_truth == (split in GT_SPLITS)
        first = ds.videos()[0]
        assert ds.read_frames(first.id).shape == (first.num_frames, *first.size, 3)
        for video in ds.videos():
            objects = _object_masks(bench_root, split, video.id) if ds.has_ground_truth else {}
            for exp in ds.expressions(video.id):
                truth = ds.ground_truth(video.id, exp.id)
                if split not in GT_SPLITS:
                    assert truth is None and exp.obj_ids is None
                    continue
                assert truth is not None and truth.shape == (video.num_frames, *video.size)
                assert exp.obj_ids is not None
                union = np.any([objects[o] for o in exp.obj_ids], axis=0)  # pycocotools' decode
                assert np.array_equal(truth, union) and truth.any()


def test_eval_scores_the_ground_truth_one(bench_root: Path, tmp_path: Path) -> None:
    for split in GT_SPLITS:
        ds = open_dataset("mevis", bench_root, split)
        pred = MaskSet(tmp_path / split, storage="rle")
        for video in ds.videos():
            for exp in ds.expressions(video.id):
                pred.write(
                    video.id, exp.id, Track(video.frame_ids, ds.ground_truth(video.id, exp.id))
                )
            pred.mark_complete(video.id)
        out = tmp_path / f"{split}.json"
        args = ["eval", "--pred", str(tmp_path / split), "--gt", str(bench_root), "--split", split]
        assert main([*args, "--format", "mevis", "--json", str(out)]) == 0
        scores = json.loads(out.read_text())
        assert scores["protocol"] == "mevis" and not scores["missing"]
        assert scores["J"] == scores["F"] == scores["JF"] == 1.0


def test_deterministic_and_refusals(tmp_path: Path) -> None:
    a = write_synthetic_mevis_benchmark(tmp_path / "a", seed=4, videos=2)
    b = write_synthetic_mevis_benchmark(tmp_path / "b", seed=4, videos=2, workers=2)
    assert _tree_digest(a) == _tree_digest(b)
    write_synthetic_mevis_benchmark(tmp_path / "a", seed=4, videos=2)  # same parameters: rewrites
    assert _tree_digest(a) == _tree_digest(b)
    c = write_synthetic_mevis_benchmark(tmp_path / "c", seed=5, videos=2)
    assert _tree_digest(a) != _tree_digest(c)
    with pytest.raises(UserError, match="other parameters"):
        write_synthetic_mevis_benchmark(tmp_path / "a", seed=5, videos=2)
    with pytest.raises(UserError, match="unknown MeViS split"):
        write_synthetic_mevis_benchmark(tmp_path / "d", splits=("test",))
    one = generate_video(4, "train", 1, (120, 160))
    again = generate_video(4, "train", 1, (120, 160))
    assert np.array_equal(one.frames, again.frames) and one.expressions == again.expressions


def test_ytvos_is_the_default_format(tmp_path: Path) -> None:
    plain, named = tmp_path / "plain", tmp_path / "named"
    assert main(["data", "synth", "--out", str(plain), "--videos", "1"]) == 0
    assert main(["data", "synth", "--format", "ytvos", "--out", str(named), "--videos", "1"]) == 0
    assert _tree_digest(plain) == _tree_digest(named)
    assert (plain / "meta_expressions" / "valid" / "meta_expressions.json").is_file()


def _kinds(root: Path) -> list[tuple[str, str, str, dict, list[dict]]]:
    """(split, video, exp id, expression info, the video's objects) of every GT expression."""
    out = []
    for split in GT_SPLITS:
        for vid, info in _read(root / split / "objects.json").items():
            for eid, exp in info["expressions"].items():
                out.append((split, vid, eid, exp, info["objects"]))
    return out


def _words(text: str) -> tuple[str | None, str | None, int]:
    """The appearance words of an expression: colour, shape (singular), number of targets."""
    words = text.split()
    colour = next((w for w in words if w in COLOURS), None)
    shape = next((SINGULAR.get(w, w) for w in words if w in SHAPES or w in SINGULAR), None)
    count = 3 if "three" in words else 2 if "two" in words else 1
    return colour, shape, count


def test_expression_kinds(bench_root: Path) -> None:
    counts: Counter[tuple[str, int]] = Counter()
    lookalike = 0
    for split, vid, eid, exp, objects in _kinds(bench_root):
        text = _meta(bench_root, split)[vid]["expressions"][eid]["exp"]
        colour, shape, count = _words(text)
        assert (colour, shape, count) == (exp["colour"], exp["shape"], len(exp["obj_ids"]))
        counts[exp["kind"], count] += 1
        named = [
            o for o in objects if colour in (None, o["colour"]) and shape in (None, o["shape"])
        ]
        if exp["kind"] == "appearance":  # the words alone pick exactly the targets
            assert sorted(o["obj_id"] for o in named) == exp["obj_ids"]
        else:  # more objects fit the words than the expression means: motion decides
            assert set(exp["obj_ids"]) < {o["obj_id"] for o in named}
            lookalike += len({o["look"] for o in named}) == 1
    for kind in ("appearance", "motion"):
        assert all(counts[kind, n] >= 2 for n in (1, 2, 3)), counts
    motion = sum(v for (k, _), v in counts.items() if k == "motion")
    assert lookalike >= 0.3 * motion  # same colour, shape and texture: only motion tells


def _oracle(text: str, objects: list[dict], masks: dict[int, np.ndarray]) -> np.ndarray:
    """The best single-frame appearance match: per frame, the ``count`` visible objects that fit
    every colour / shape word of ``text`` (largest first, then lowest id), motion ignored."""
    colour, shape, count = _words(text)
    fits = [
        o["obj_id"]
        for o in objects
        if colour in (None, o["colour"]) and shape in (None, o["shape"])
    ]
    T = next(iter(masks.values())).shape[0]
    out = np.zeros_like(next(iter(masks.values())))
    for k in range(T):
        visible = [o for o in fits if masks[o][k].any()]
        ranked = sorted(visible, key=lambda o: (-int(masks[o][k].sum()), o))
        for o in ranked[:count]:
            out[k] |= masks[o][k]
    return out


def test_single_frame_oracle_fails_motion_and_solves_appearance(bench_root: Path) -> None:
    scores: dict[str, list[float]] = {"appearance": [], "motion": []}
    for split in GT_SPLITS:
        ds = open_dataset("mevis", bench_root, split)
        info = _read(bench_root / split / "objects.json")
        for video in ds.videos():
            masks = _object_masks(bench_root, split, video.id)
            for exp in ds.expressions(video.id):
                guess = _oracle(exp.text, info[video.id]["objects"], masks)
                truth = ds.ground_truth(video.id, exp.id)
                assert truth is not None
                (row,) = score_video(
                    {exp.id: Track(video.frame_ids, guess)},
                    {exp.id: truth},
                    video.frame_ids,
                    protocol="mevis",
                )
                scores[info[video.id]["expressions"][exp.id]["kind"]].append(row.JF)
    assert np.mean(scores["appearance"]) == 1.0
    assert np.mean(scores["motion"]) <= 0.6, np.mean(scores["motion"])
