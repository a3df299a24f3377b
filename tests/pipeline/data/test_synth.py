"""The synthetic benchmark: layout of the contract, determinism, unambiguous expressions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.core.data.synth import (
    COLOURS,
    EVENT_LONG,
    EVENT_SHORT,
    MOTION_LONG,
    MOTION_SHORT,
    POSITION_LONG,
    POSITION_SHORT,
    SHAPES,
    SIZES,
    generate_video,
    synthetic_vocabulary,
    write_synthetic_benchmark,
)
from pipeline.core.errors import UserError


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    assert main(["data", "synth", "--out", str(root), "--seed", "3", "--videos", "6"]) == 0
    return root


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_layout_of_the_contract(bench_root: Path) -> None:
    for split in ("train", "valid", "test"):
        meta = json.loads(
            (bench_root / "meta_expressions" / split / "meta_expressions.json").read_text()
        )
        assert len(meta["videos"]) == 6
        assert list(meta["videos"]) == sorted(meta["videos"])
        objects_meta = json.loads((bench_root / split / "meta.json").read_text())["videos"]
        for vid, entry in meta["videos"].items():
            frames = entry["frames"]
            assert 8 <= len(frames) <= 40
            assert frames == [f"{5 * i:05d}" for i in range(len(frames))]
            jpgs = sorted(p.stem for p in (bench_root / split / "JPEGImages" / vid).iterdir())
            pngs = sorted(p.stem for p in (bench_root / split / "Annotations" / vid).iterdir())
            assert jpgs == frames and pngs == frames
            ids = list(entry["expressions"])
            assert ids == [str(i) for i in range(len(ids))]
            obj_ids = {e["obj_id"] for e in entry["expressions"].values()}
            assert obj_ids == set(objects_meta[vid]["objects"])
            png = Image.open(bench_root / split / "Annotations" / vid / f"{frames[0]}.png")
            assert png.mode == "P"
            jpg = Image.open(bench_root / split / "JPEGImages" / vid / f"{frames[0]}.jpg")
            assert jpg.size == png.size
            labels = np.stack(
                [
                    np.asarray(Image.open(bench_root / split / "Annotations" / vid / f"{f}.png"))
                    for f in frames
                ]
            )
            assert set(np.unique(labels)) <= {0} | {int(i) for i in obj_ids}
            for obj_id, obj in objects_meta[vid]["objects"].items():
                seen = [f for k, f in enumerate(frames) if (labels[k] == int(obj_id)).any()]
                assert seen == obj["frames"] and len(seen) >= 2


def test_odd_counts_several_sizes_and_pairs(tmp_path: Path) -> None:
    root = write_synthetic_benchmark(tmp_path / "b", seed=0, videos=12, splits=("valid",))
    meta = json.loads((root / "meta_expressions/valid/meta_expressions.json").read_text())
    counts = [len(v["expressions"]) for v in meta["videos"].values()]
    assert any(c % 2 == 1 for c in counts) and any(c % 2 == 0 for c in counts)
    sizes = {
        Image.open(next((root / "valid/JPEGImages" / v).iterdir())).size for v in meta["videos"]
    }
    assert len(sizes) >= 3 and all(120 <= min(s) <= 240 for s in sizes)
    for v in meta["videos"].values():
        exps = list(v["expressions"].values())
        for i in range(0, len(exps) - 1, 2):  # consecutive pairs describe one object
            assert exps[i]["obj_id"] == exps[i + 1]["obj_id"] or len(exps) % 2 == 1


def test_deterministic_and_resumable(tmp_path: Path) -> None:
    a = write_synthetic_benchmark(tmp_path / "a", seed=5, videos=2)
    b = write_synthetic_benchmark(tmp_path / "b", seed=5, videos=2, workers=2)
    assert _tree_digest(a) == _tree_digest(b)
    # an interrupted run resumes: remove one video and its metas, run again
    vid = next((a / "valid" / "Annotations").iterdir()).name
    for sub in ("Annotations", "JPEGImages"):
        for f in (a / "valid" / sub / vid).iterdir():
            f.unlink()
        (a / "valid" / sub / vid).rmdir()
    (a / "meta_expressions/valid/meta_expressions.json").unlink()
    write_synthetic_benchmark(tmp_path / "a", seed=5, videos=2)
    assert _tree_digest(a) == _tree_digest(b)
    c = write_synthetic_benchmark(tmp_path / "c", seed=6, videos=2)
    assert _tree_digest(a) != _tree_digest(c)
    with pytest.raises(UserError, match="other parameters"):
        write_synthetic_benchmark(tmp_path / "a", seed=6, videos=2)


def _parse(text: str) -> dict[str, str]:
    """Expression text back to the attributes it names."""
    found: dict[str, str] = {}
    tables = {
        "motion": {
            **{v: k for k, v in MOTION_LONG.items()},
            **{v: k for k, v in MOTION_SHORT.items()},
        },
        "event": {
            **{v: k for k, v in EVENT_LONG.items()},
            **{v: k for k, v in EVENT_SHORT.items()},
        },
        "position_long": {v: k for k, v in POSITION_LONG.items()},
    }
    rest = f" {text} "
    for key, table in tables.items():
        for phrase, value in sorted(table.items(), key=lambda kv: -len(kv[0])):
            if f" {phrase} " in rest:
                found[key.split("_")[0]] = value
                rest = rest.replace(f" {phrase} ", " ")
    for word in rest.split():
        if word in COLOURS:
            found["colour"] = word
        elif word in SHAPES:
            found["shape"] = word
        elif word in SIZES:
            found["size"] = word
        elif word in POSITION_SHORT:
            found["position"] = word
    return found


def test_expressions_name_their_object_and_only_it() -> None:
    vocabulary = set(synthetic_vocabulary())
    checked_unique = 0
    for index in range(12):
        video = generate_video(11, "train", index, (144, 192))
        for text, obj_id in video.expressions:
            assert set(text.split()) <= vocabulary
            attrs = _parse(text)
            position = attrs.pop("position", None)
            target = next(o for o in video.objects if o.obj_id == obj_id)
            assert all(getattr(target, k) == v for k, v in attrs.items()), (text, target)
            matching = [
                o for o in video.objects if all(getattr(o, k) == v for k, v in attrs.items())
            ]
            if position is None:
                assert matching == [target], text
                checked_unique += 1
            else:
                assert len(matching) >= 2, text
                t = np.arange(video.frames.shape[0], dtype=np.float64)
                tx, ty = target.centre(t, len(t))
                for other in matching:
                    if other is not target:
                        ox, oy = other.centre(t, len(t))
                        gap = {"left": ox - tx, "right": tx - ox, "top": oy - ty, "bottom": ty - oy}
                        assert (gap[position] > 0).all(), text
    assert checked_unique > 10


def test_vocabulary_file(bench_root: Path) -> None:
    words = (bench_root / "vocabulary.txt").read_text().split()
    assert words == synthetic_vocabulary() and "circle" in words and len(set(words)) == len(words)
