"""The MeViS zip as the MeViS server wants it: ``<video>/<exp>/<frame>.png`` at the zip root,
every expression of every video of the split, MeViS's 5-digit frame names; and the validator's
messages name the problem for the common mistakes (an ``Annotations/`` level, a wrapping
folder, a missing expression, frames named otherwise)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core.data import open_dataset
from pipeline.core.data.synth_mevis import write_synthetic_mevis_benchmark
from pipeline.core.masks import MaskSet, Track
from pipeline.core.submission import package, validate


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("mevis_sub")
    data = write_synthetic_mevis_benchmark(root / "mevis", seed=3, videos=2, splits=("valid_u",))
    ds = open_dataset("mevis", data, "valid_u")
    masks = MaskSet(root / "masks", storage="rle")
    for video in ds.videos():
        for exp in ds.expressions(video.id):
            masks.write(video.id, exp.id, Track(video.frame_ids, ds.ground_truth(video.id, exp.id)))
        masks.mark_complete(video.id)
    meta = data / "valid_u" / "meta_expressions.json"
    good = package(masks, meta, "mevis", root / "good.zip")
    return {"ds": ds, "meta": meta, "good": good}


def _rewrite(src: Path, dest: Path, rename=lambda name: name, drop: str | None = None) -> Path:
    """A copy of ``src`` with member names mapped by ``rename``; members starting with
    ``drop`` left out."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            if drop is not None and info.filename.startswith(drop):
                continue
            zout.writestr(rename(info.filename), zin.read(info))
    return dest


def test_the_packaged_zip_has_the_server_layout(bench: dict) -> None:
    ds = bench["ds"]
    with zipfile.ZipFile(bench["good"]) as zf:
        names = zf.namelist()
    expected = sorted(
        f"{video.id}/{exp.id}/{frame}.png"
        for video in ds.videos()
        for exp in ds.expressions(video.id)
        for frame in video.frame_ids
    )
    assert names == expected  # the zip root holds the video folders, nothing else
    assert all(len(name.split("/")[2]) == len("00000.png") for name in names)
    assert validate(bench["good"], bench["meta"], "mevis") == []


def test_an_annotations_level_is_named_once(bench: dict, tmp_path: Path) -> None:
    wrapped = _rewrite(bench["good"], tmp_path / "ann.zip", rename=lambda n: f"Annotations/{n}")
    problems = validate(wrapped, bench["meta"], "mevis")
    assert [(p.kind, p.where) for p in problems] == [("wrong_layout", "Annotations/")]
    text = str(problems[0])
    assert "MeViS server wants <video>/<exp>/<frame>.png at the zip root" in text
    assert "Ref-YouTube-VOS layout" in text and "cd Annotations" in text
    argv = ["validate", str(wrapped), "--meta", str(bench["meta"]), "--format", "mevis"]
    assert main(argv) == 1
    # the same zip is a valid Ref-YouTube-VOS layout; the good one is not
    assert validate(wrapped, bench["meta"], "ytvos") == []
    flat = validate(bench["good"], bench["meta"], "ytvos")
    assert [p.kind for p in flat] == ["wrong_layout"] and "MeViS layout" in str(flat[0])


def test_a_wrapping_folder_is_named(bench: dict, tmp_path: Path) -> None:
    wrapped = _rewrite(bench["good"], tmp_path / "dir.zip", rename=lambda n: f"inference/{n}")
    problems = validate(wrapped, bench["meta"], "mevis")
    assert [(p.kind, p.where) for p in problems] == [("wrong_layout", "inference/")]
    assert "cd inference && zip -r" in str(problems[0])


def test_a_missing_expression_is_named(bench: dict, tmp_path: Path) -> None:
    ds = bench["ds"]
    video = ds.videos()[0]
    exp = ds.expressions(video.id)[-1].id
    dropped = _rewrite(bench["good"], tmp_path / "noexp.zip", drop=f"{video.id}/{exp}/")
    problems = validate(dropped, bench["meta"], "mevis")
    assert [(p.kind, p.where) for p in problems] == [("missing_expression", f"{video.id}/{exp}/")]
    assert f"expression {exp} of video {video.id}" in str(problems[0])
    assert f"{len(video.frame_ids)} frames" in str(problems[0])


def test_a_mixed_zip_names_the_misplaced_members(bench: dict, tmp_path: Path) -> None:
    video = bench["ds"].videos()[1]
    mixed = _rewrite(
        bench["good"],
        tmp_path / "mixed.zip",
        rename=lambda n: f"Annotations/{n}" if n.startswith(f"{video.id}/") else n,
    )
    problems = validate(mixed, bench["meta"], "mevis")
    assert ("missing_video", f"{video.id}/") in [(p.kind, p.where) for p in problems]
    extras = [p for p in problems if p.kind == "extra_file"]
    assert extras and all("misplaced" in p.detail and "Annotations/" in p.detail for p in extras)


def test_frames_named_otherwise_are_named(bench: dict, tmp_path: Path) -> None:
    """MeViS frames are ``00000``, ``00001``, ...; ``0.png`` or ``.jpg`` members do not count."""
    video = bench["ds"].videos()[0]
    exp = bench["ds"].expressions(video.id)[0].id
    prefix = f"{video.id}/{exp}/"

    def unpadded(name: str) -> str:
        if not name.startswith(prefix):
            return name
        return f"{prefix}{int(name[len(prefix) : -4])}.png"

    renamed = _rewrite(bench["good"], tmp_path / "names.zip", rename=unpadded)
    problems = validate(renamed, bench["meta"], "mevis")
    assert [(p.kind, p.where) for p in problems if p.kind != "extra_file"] == [
        ("missing_expression", prefix)
    ]
    extras = [p for p in problems if p.kind == "extra_file"]
    assert len(extras) == len(video.frame_ids)
    assert all("is not listed for video" in p.detail for p in extras)
