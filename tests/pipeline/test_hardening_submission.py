"""Hardening of packaging and validation: duplicated members, PNGs only some decoders read,
leftovers of killed packagings, and empty zips named in errors."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core.data import open_dataset
from pipeline.core.data.synth import write_synthetic_benchmark
from pipeline.core.errors import InputFileError
from pipeline.core.io import (
    decode_png_pixels,
    decode_png_strict,
    encode_mask_png,
    remove_stale_temps,
    temp_sibling_pattern,
)
from pipeline.core.masks import MaskSet, Track, import_masks
from pipeline.core.masks.sources import ZipSource, describe_source, source_location
from pipeline.core.submission import package, validate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("hard")
    write_synthetic_benchmark(root / "data", seed=5, videos=2, splits=("valid",))
    ds = open_dataset("ytvos", root / "data", "valid")
    masks = MaskSet(root / "rle", "rle")
    for video in ds.videos():
        for exp in ds.expressions(video.id):
            masks.write(video.id, exp.id, Track(video.frame_ids, ds.ground_truth(video.id, exp.id)))
        masks.mark_complete(video.id)
    meta = root / "data/meta_expressions/valid/meta_expressions.json"
    good = package(masks, meta, "ytvos", root / "good.zip")
    return {"root": root, "ds": ds, "meta": meta, "masks": masks, "good": good}


def _copy_zip(src: Path, dest: Path, replace: dict[str, bytes], extra: list[str]) -> Path:
    """``src`` with some members' bytes replaced and the members ``extra`` stored again."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, replace.get(name, zin.read(name)))
        for name in extra:
            with pytest.warns(UserWarning, match="Duplicate name"):
                zout.writestr(name, zin.read(name))
    return dest


# --------------------------------------------------------------------------------------------
# 1. the validator


def test_validator_refuses_a_duplicated_member(bench: dict, tmp_path: Path) -> None:
    with zipfile.ZipFile(bench["good"]) as zf:
        member = zf.namelist()[3]
    dup = _copy_zip(bench["good"], tmp_path / "dup.zip", {}, [member])
    problems = validate(dup, bench["meta"], "ytvos")
    assert [(p.kind, p.where) for p in problems] == [("duplicate_member", member)]
    assert "stored 2 times" in str(problems[0])
    assert main(["validate", str(dup), "--meta", str(bench["meta"]), "--format", "ytvos"]) == 1


def test_validator_refuses_a_png_pil_reads_but_cv2_does_not(bench: dict, tmp_path: Path) -> None:
    video = bench["ds"].videos()[0]
    h, w = video.size
    rng = np.random.default_rng(0)
    mask = rng.random((h, w)) > 0.5
    cut = encode_mask_png(mask)[:-20]  # IEND and the end of the last IDAT chunk gone
    decode_png_pixels(cut, "cut.png")  # the lenient decoder (the old check) accepts it
    with pytest.raises(InputFileError, match=r"cut\.png"):
        decode_png_strict(cut, "cut.png")
    member = f"Annotations/{video.id}/0/{video.frame_ids[0]}.png"
    bad = _copy_zip(bench["good"], tmp_path / "cut.zip", {member: cut}, [])
    problems = validate(bad, bench["meta"], "ytvos")
    assert [(p.kind, p.where) for p in problems] == [("corrupt_png", member)]
    assert main(["validate", str(bad), "--meta", str(bench["meta"]), "--format", "ytvos"]) == 1
    whole = encode_mask_png(mask)
    assert decode_png_strict(whole, "whole.png").shape == (h, w)


# --------------------------------------------------------------------------------------------
# 2. leftovers of killed packagings

_KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from pipeline.core.masks import MaskSet
    from pipeline.core.submission import package

    class Slow:
        # a mask source that hangs on its second track, so the zip is half written
        def __init__(self, inner):
            self.inner, self.reads = inner, 0
            self.name = inner.name
        def videos(self):
            return self.inner.videos()
        def expressions(self, video):
            return self.inner.expressions(video)
        def key_frames(self, video):
            return self.inner.key_frames(video)
        def read(self, video, exp):
            self.reads += 1
            if self.reads == 2:
                print("writing", flush=True)
                time.sleep(600)
            return self.inner.read(video, exp)

    package(Slow(MaskSet(sys.argv[1])), sys.argv[2], "ytvos", sys.argv[3])
    """
)


def _leftovers(out_zip: Path) -> list[str]:
    pattern = temp_sibling_pattern(out_zip)
    return sorted(p.name for p in out_zip.parent.iterdir() if pattern.fullmatch(p.name))


def test_sigkilled_package_leftover_is_removed_by_the_next_run(bench: dict, tmp_path: Path) -> None:
    out_zip = tmp_path / "out" / "sub.zip"
    script = tmp_path / "killed_run.py"
    script.write_text(_KILLED_RUN)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(bench["masks"].root), str(bench["meta"]), str(out_zip)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"
        assert len(_leftovers(out_zip)) == 1  # the tmp file exists while it writes
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(_leftovers(out_zip)) == 1 and not out_zip.exists()  # what a kill leaves
    # a leftover made by hand the way a killed run leaves it, and files that must stay
    (out_zip.parent / ".sub.zip.0123abcd.tmp").write_bytes(b"PK\x03\x04 half a zip")
    keep = [".other.zip.0123abcd.tmp", ".sub.zip.nothex12.tmp", "sub.zip.0123abcd.tmp"]
    for name in keep:
        (out_zip.parent / name).write_bytes(b"x")
    masks, meta = str(bench["masks"].root), str(bench["meta"])
    argv = ["package", "--masks", masks, "--meta", meta, "--format", "ytvos", "--out", str(out_zip)]
    assert main(argv) == 0
    assert _leftovers(out_zip) == []
    assert sorted(p.name for p in out_zip.parent.iterdir()) == sorted([*keep, "sub.zip"])
    assert validate(out_zip, bench["meta"], "ytvos") == []
    assert out_zip.read_bytes() == bench["good"].read_bytes()


def test_a_temp_file_held_by_a_live_writer_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "sub.zip"
    live = tmp_path / ".sub.zip.89abcdef.tmp"
    live.write_bytes(b"being written")
    fresh = tmp_path / ".sub.zip.fedcba98.tmp"  # just created, not locked yet: kept
    fresh.write_bytes(b"")
    old_empty = tmp_path / ".sub.zip.00000000.tmp"
    old_empty.write_bytes(b"")
    past = time.time() - 3600
    os.utime(old_empty, (past, past))
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert remove_stale_temps(target) == [old_empty]
        assert live.exists() and fresh.exists()
    assert remove_stale_temps(target) == [live]  # its writer is gone
    assert fresh.exists()


# --------------------------------------------------------------------------------------------
# 3. empty zips are named


def test_empty_zip_is_named_by_import_masks_and_vote(
    bench: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(InputFileError, match=f"^{empty}: the zip holds no PNG masks"):
        import_masks(empty, tmp_path / "imported")
    monkeypatch.chdir(tmp_path)  # a relative path, as typed on a command line
    meta = str(bench["meta"])
    for argv in (
        ["import-masks", "empty.zip", "--out", "i", "--meta", meta],
        ["vote", "empty.zip", "empty.zip", "--out", "v", "--meta", meta],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "error: empty.zip: the zip holds no PNG masks" in err, err


def test_a_source_is_named_as_given_and_identified_resolved(bench: dict, tmp_path: Path) -> None:
    assert describe_source(Path("preds.zip")) == "preds.zip"  # Path("preds.zip").root is ""
    assert describe_source("preds.zip") == "preds.zip"
    masks = bench["masks"]
    assert describe_source(masks) == str(masks.root)
    assert source_location(masks) == masks.root.resolve() == source_location(str(masks.root))
    folder = tmp_path / "sub"
    (folder / "Annotations").mkdir(parents=True)
    assert source_location(folder) == source_location(folder / "Annotations")


def test_zip_source_refuses_a_duplicated_member(bench: dict, tmp_path: Path) -> None:
    """zipfile reads the last copy of a name stored twice; the reader must not pick one."""
    good = bench["good"]
    with zipfile.ZipFile(good) as zf:
        first_png = next(n for n in zf.namelist() if n.endswith(".png"))
    dup = _copy_zip(good, tmp_path / "dup.zip", {}, [first_png])
    with pytest.raises(InputFileError, match=rf"{first_png}.* appears twice"):
        ZipSource(dup)
