"""Packaging (byte-identical zips, both layouts) and validation on seeded defects."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.core.data import open_dataset
from pipeline.core.data.synth import write_synthetic_benchmark
from pipeline.core.errors import UserError
from pipeline.core.io import encode_mask_png
from pipeline.core.masks import MaskSet, Track
from pipeline.core.submission import package, validate


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("sub")
    write_synthetic_benchmark(root / "data", seed=4, videos=2, splits=("valid",))
    ds = open_dataset("ytvos", root / "data", "valid")
    sets = {storage: MaskSet(root / storage, storage) for storage in ("rle", "png")}
    for video in ds.videos():
        for exp in ds.expressions(video.id):
            track = Track(video.frame_ids, ds.ground_truth(video.id, exp.id))
            for ms in sets.values():
                ms.write(video.id, exp.id, track)
        for ms in sets.values():
            ms.mark_complete(video.id)
    meta = root / "data/meta_expressions/valid/meta_expressions.json"
    return {"root": root, "ds": ds, "meta": meta, "sets": sets}


def test_package_is_byte_identical_and_valid(bench: dict, tmp_path: Path) -> None:
    meta = bench["meta"]
    a = package(bench["sets"]["rle"], meta, "ytvos", tmp_path / "a.zip")
    b = package(bench["root"] / "png", meta, "ytvos", tmp_path / "b.zip", workers=2)
    assert a.read_bytes() == b.read_bytes()
    assert (
        package(bench["sets"]["rle"], meta, "ytvos", tmp_path / "c.zip").read_bytes()
        == a.read_bytes()
    )
    with zipfile.ZipFile(a) as zf:
        names = zf.namelist()
        assert names == sorted(names) and all(n.startswith("Annotations/") for n in names)
        im = Image.open(io.BytesIO(zf.read(names[0])))
        assert im.mode == "L" and set(np.unique(np.asarray(im))) <= {0, 255}
    ds = bench["ds"]
    expected = sum(len(v.frame_ids) * len(ds.expressions(v.id)) for v in ds.videos())
    assert len(names) == expected
    assert validate(a, meta, "ytvos") == []
    assert main(["validate", str(a), "--meta", str(meta), "--format", "ytvos"]) == 0
    argv = ["package", "--masks", str(bench["root"] / "png"), "--meta", str(meta)]
    assert main([*argv, "--format", "mevis", "--out", str(tmp_path / "m.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "m.zip") as zf:
        assert not any(n.startswith("Annotations") for n in zf.namelist())
    assert validate(tmp_path / "m.zip", meta, "mevis") == []
    assert [p.kind for p in validate(tmp_path / "m.zip", meta, "ytvos")] == ["wrong_layout"]


def test_package_refuses_missing_or_mis_sized_masks(bench: dict, tmp_path: Path) -> None:
    ds = bench["ds"]
    video = ds.videos()[0]
    partial = MaskSet(tmp_path / "partial")
    exps = ds.expressions(video.id)
    for exp in exps[:-1]:
        partial.write(video.id, exp.id, Track(video.frame_ids, ds.ground_truth(video.id, exp.id)))
    partial.mark_complete(video.id)
    with pytest.raises(UserError, match=f"no expression {exps[-1].id} of video {video.id}"):
        package(partial, bench["meta"], "ytvos", tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
    small = MaskSet(tmp_path / "small")
    for v in ds.videos():
        for exp in ds.expressions(v.id):
            small.write(v.id, exp.id, Track(v.frame_ids, np.zeros((v.num_frames, 4, 4), bool)))
        small.mark_complete(v.id)
    with pytest.raises(UserError, match="masks are 4x4"):
        package(small, bench["meta"], "ytvos", tmp_path / "y.zip")


def _rewrite(src: Path, dest: Path, drop=(), replace=None, add=None) -> Path:
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for name in zin.namelist():
            if any(name.startswith(d) for d in drop):
                continue
            zout.writestr(name, replace.get(name, zin.read(name)))
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dest


def test_validator_names_each_seeded_defect(bench: dict, tmp_path: Path) -> None:
    meta = bench["meta"]
    good = package(bench["sets"]["rle"], meta, "ytvos", tmp_path / "good.zip")
    ds = bench["ds"]
    v0, v1 = ds.videos()[0], ds.videos()[1]
    H, W = v0.size
    frame0 = f"Annotations/{v0.id}/0/{v0.frame_ids[1]}.png"
    frame1 = f"Annotations/{v0.id}/0/{v0.frame_ids[2]}.png"
    frame2 = f"Annotations/{v0.id}/0/{v0.frame_ids[3]}.png"
    frame3 = f"Annotations/{v0.id}/0/{v0.frame_ids[4]}.png"
    last_exp = ds.expressions(v1.id)[-1].id
    broken = f"Annotations/{v1.id}/0/{v1.frame_ids[0]}.png"
    with zipfile.ZipFile(good) as zf:
        truncated = zf.read(broken)[:60]
    grey = np.zeros((H, W), np.uint8)
    grey[:2, :2] = 128
    palette = Image.fromarray(np.zeros((H, W), np.uint8), mode="P")
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    bad = _rewrite(
        good,
        tmp_path / "bad.zip",
        drop=[frame0, f"Annotations/{v1.id}/{last_exp}/"],
        replace={
            frame1: encode_mask_png(np.zeros((H // 2, W), bool)),
            frame2: encode_mask_png(grey),
            frame3: buf.getvalue(),
            broken: truncated,
        },
        add={
            "Annotations/readme.txt": b"hello",
            f"Annotations/{v0.id}/0/99999.png": encode_mask_png(np.zeros((H, W), bool)),
            "../escape.png": b"x",
        },
    )
    found = {(p.kind, p.where) for p in validate(bad, meta, "ytvos")}
    expected = {
        ("missing_frame", frame0),
        ("missing_expression", f"Annotations/{v1.id}/{last_exp}/"),
        ("wrong_size", frame1),
        ("bad_values", frame2),
        ("wrong_mode", frame3),
        ("extra_file", "Annotations/readme.txt"),
        ("extra_file", f"Annotations/{v0.id}/0/99999.png"),
        ("unsafe_path", "../escape.png"),
        ("corrupt_png", broken),
    }
    assert found == expected  # each defect once, nothing else
    no_video = _rewrite(good, tmp_path / "nov.zip", drop=[f"Annotations/{v1.id}/"])
    assert [(p.kind, p.where) for p in validate(no_video, meta, "ytvos")] == [
        ("missing_video", f"Annotations/{v1.id}/")
    ]
    assert main(["validate", str(bad), "--meta", str(meta), "--format", "ytvos"]) == 1
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert [p.kind for p in validate(tmp_path / "junk.zip", meta, "ytvos")] == ["not_a_zip"]


def test_ytvos_valid_meta_leaves_out_test_videos(bench: dict, tmp_path: Path) -> None:
    meta = json.loads(bench["meta"].read_text())
    test_video = sorted(meta["videos"])[0]
    root = tmp_path / "ytvos"
    (root / "meta_expressions/valid").mkdir(parents=True)
    (root / "meta_expressions/test").mkdir(parents=True)
    (root / "meta_expressions/valid/meta_expressions.json").write_text(json.dumps(meta))
    only_test = {"videos": {test_video: meta["videos"][test_video]}}
    (root / "meta_expressions/test/meta_expressions.json").write_text(json.dumps(only_test))
    out = package(
        bench["sets"]["rle"],
        root / "meta_expressions/valid/meta_expressions.json",
        "ytvos",
        tmp_path / "v.zip",
    )
    with zipfile.ZipFile(out) as zf:
        assert not any(n.startswith(f"Annotations/{test_video}/") for n in zf.namelist())


def test_corrupt_jpeg_names_the_file_and_leaves_no_zip(bench: dict, tmp_path: Path) -> None:
    import shutil

    from pipeline.core.errors import InputFileError

    data = tmp_path / "data"
    shutil.copytree(bench["root"] / "data", data)
    video = bench["ds"].videos()[1]
    jpeg = data / "valid/JPEGImages" / video.id / f"{video.frame_ids[0]}.jpg"
    jpeg.write_bytes(b"\xff\xd8\xff garbage")
    meta = data / "meta_expressions/valid/meta_expressions.json"
    with pytest.raises(InputFileError, match=re.escape(str(jpeg))):
        package(bench["sets"]["rle"], meta, "ytvos", tmp_path / "out" / "sub.zip")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
