"""Tracks, mask sets in both storages, read-only sources, import, and refused archives."""

from __future__ import annotations

import json
import re
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pipeline.cli import main
from pipeline.core.data import read_split_meta
from pipeline.core.errors import InputFileError, UserError
from pipeline.core.io import encode_mask_png, read_json, read_mask_png
from pipeline.core.keyframes import read_key_frame_json
from pipeline.core.masks import MaskSet, PngFolderSource, Track, ZipSource, import_masks, open_masks

FRAMES = ("00000", "00005", "00010")


def _rand_track(rng: np.random.Generator, H: int = 9, W: int = 13, scores: bool = True) -> Track:
    masks = rng.random((3, H, W)) < 0.4
    masks[1] = False  # an empty frame
    return Track(
        FRAMES,
        masks,
        rng.random(3).astype(np.float32) if scores else None,
        rng.random((3, H, W)).astype(np.float32),
    )


def test_track_checks_shapes_and_picks_key_frames() -> None:
    t = Track(FRAMES, np.zeros((3, 4, 5), np.uint8), [0.2, 0.9, 0.9])
    assert t.masks.dtype == bool and t.size == (4, 5) and t.key_frame() == 1
    with pytest.raises(ValueError, match="T = 3"):
        Track(FRAMES, np.zeros((2, 4, 5), bool))
    with pytest.raises(ValueError, match="2 scores"):
        Track(FRAMES, np.zeros((3, 4, 5), bool), [1, 2])
    m = np.zeros((3, 4, 4), bool)
    m[:, :2, :2] = True
    r = Track(FRAMES, m).resized((8, 8))
    assert r.size == (8, 8) and r.masks[:, :4, :4].all() and not r.masks[:, 4:, :].any()


@pytest.mark.parametrize("storage", ["rle", "png"])
def test_mask_set_round_trip_and_visibility(tmp_path: Path, storage: str) -> None:
    rng = np.random.default_rng(0)
    ms = MaskSet(tmp_path / "ms", storage)
    tracks = {e: _rand_track(rng) for e in ("1", "0", "10", "2")}
    for exp, track in tracks.items():
        ms.write("vidA", exp, track)
        assert ms.videos() == []  # invisible until complete
    ms.write_key_frames("vidA", {"0": 2, "1": 0})
    ms.mark_complete("vidA", ["0", "1", "2", "10"])
    again = MaskSet(tmp_path / "ms")
    assert again.storage == storage and again.videos() == ["vidA"]
    assert again.expressions("vidA") == ["0", "1", "2", "10"]
    for exp, track in tracks.items():
        got = again.read("vidA", exp)
        assert got.frame_ids == FRAMES
        np.testing.assert_array_equal(got.masks, track.masks)
        np.testing.assert_allclose(got.scores, track.scores)
        np.testing.assert_allclose(got.probs, track.probs, atol=1e-3)  # float16 storage
    assert again.key_frames("vidA") == {"0": 2, "1": 0}
    if storage == "png":
        png = tmp_path / "ms/Annotations/vidA/0/00010.png"
        np.testing.assert_array_equal(read_mask_png(png), tracks["0"].masks[2])
    else:
        record = read_json(tmp_path / "ms/tracks/vidA/0.json")
        rle = {"size": [13, 9], "counts": record["rle"]["counts"][0]}  # row-major: transposed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools under numpy 2
            decoded = mask_utils.decode(rle)
        np.testing.assert_array_equal(decoded.T.astype(bool), tracks["0"].masks[0])
    # rewriting a track withdraws the video until it is marked complete again
    again.write("vidA", "0", tracks["1"])
    assert again.videos() == []
    with pytest.raises(UserError, match="not complete"):
        again.expressions("vidA")
    again.mark_complete("vidA", ["0", "1", "2", "10"])
    again.discard("vidA")
    assert again.videos() == [] and not again.has_track("vidA", "0")


def test_mask_set_refuses_foreign_folders_and_other_storage(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file.txt").write_text("x")
    with pytest.raises(UserError, match="not a mask set"):
        MaskSet(tmp_path / "busy")
    MaskSet(tmp_path / "ms", "png")
    with pytest.raises(UserError, match="'png' storage"):
        MaskSet(tmp_path / "ms", "rle")
    ms = MaskSet(tmp_path / "ms")
    with pytest.raises(UserError, match="no track"):
        ms.mark_complete("v", ["0"])
    with pytest.raises(UserError, match="invalid video id"):
        ms.write("../x", "0", _rand_track(np.random.default_rng(0)))


def test_export_png_and_key_frame_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ms = MaskSet(tmp_path / "ms")
    for video in ("b", "a"):
        for exp in ("0", "1"):
            ms.write(video, exp, _rand_track(rng))
        ms.write_key_frames(video, {"0": 1, "1": 2})
        ms.mark_complete(video)
    ms.export_png(tmp_path / "sub")
    folder = PngFolderSource(tmp_path / "sub")
    assert folder.videos() == ["a", "b"] and folder.name == "sub"
    for video in ("a", "b"):
        for exp in ("0", "1"):
            np.testing.assert_array_equal(folder.read(video, exp).masks, ms.read(video, exp).masks)
    ms.export_key_frame_json(tmp_path / "key_frame.json")
    assert read_json(tmp_path / "key_frame.json")["a"]["1"] == {"index_info": {"class_index": 2}}
    other = MaskSet(tmp_path / "other")
    assert other.import_key_frame_json(tmp_path / "key_frame.json") == {
        "b": {"0": 1, "1": 2},
        "a": {"0": 1, "1": 2},
    }
    assert other.key_frames("a") == {"0": 1, "1": 2}
    (tmp_path / "bad.json").write_text(json.dumps({"a": {"0": {"index_info": {}}}}))
    with pytest.raises(InputFileError, match="video a expression 0"):
        read_key_frame_json(tmp_path / "bad.json")


def _upstream_folder(root: Path, rng: np.random.Generator, videos=("v1", "v2")) -> dict:
    data = {}
    for video in videos:
        for exp in ("0", "1", "2"):
            stack = rng.random((3, 6, 7)) < 0.5
            data[(video, exp)] = stack
            folder = root / "Annotations" / video / exp
            folder.mkdir(parents=True)
            for fid, m in zip(FRAMES, stack, strict=True):
                (folder / f"{fid}.png").write_bytes(encode_mask_png(m))
    return data


def _zip_folder(folder: Path, zpath: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return zpath


@pytest.mark.parametrize("layout", ["annotations", "mevis", "named"])
def test_zip_sources_in_every_layout(tmp_path: Path, layout: str) -> None:
    data = _upstream_folder(tmp_path / "soc", np.random.default_rng(2))
    if layout == "annotations":
        zpath = _zip_folder(tmp_path / "soc", tmp_path / "soc.zip")
    elif layout == "mevis":
        zpath = _zip_folder(tmp_path / "soc/Annotations", tmp_path / "soc.zip")
    else:
        zpath = _zip_folder(tmp_path / "soc", tmp_path / "soc.zip", prefix="soc/")
    source = open_masks(zpath)
    assert isinstance(source, ZipSource) and source.name == "soc"
    assert source.videos() == ["v1", "v2"] and source.expressions("v1") == ["0", "1", "2"]
    for (video, exp), stack in data.items():
        np.testing.assert_array_equal(source.read(video, exp).masks, stack)


@pytest.mark.parametrize(
    "member", ["../evil.png", "/abs/v/0/00000.png", "Annotations/../../x/0/0.png", "C:/v/0/0.png"]
)
def test_escaping_archive_paths_are_refused(tmp_path: Path, member: str) -> None:
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("Annotations/v/0/00000.png", encode_mask_png(np.zeros((2, 2), bool)))
        zf.writestr(member, encode_mask_png(np.ones((2, 2), bool)))
    with pytest.raises(UserError, match=re.escape(f"member {member!r} could escape")):
        import_masks(zpath, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() or MaskSet(tmp_path / "dest").videos() == []
    assert not (tmp_path.parent / "evil.png").exists() and not (tmp_path / "x").exists()
    assert main(["import-masks", str(zpath), "--out", str(tmp_path / "cli")]) == 2


def test_symlink_members_are_refused(tmp_path: Path) -> None:
    zpath = tmp_path / "link.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        info = zipfile.ZipInfo("Annotations/v/0/00000.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UserError, match="could escape"):
        ZipSource(zpath)


def test_import_with_scores_key_frames_and_meta(tmp_path: Path) -> None:
    data = _upstream_folder(tmp_path / "mutr", np.random.default_rng(3))
    scores = {"v1": {e: [0.1, 0.5, 0.2] for e in "012"}, "v2": {"0": [1, 0, 0]}}
    (tmp_path / "scores.json").write_text(json.dumps(scores))
    key_frames = {"v1": {"0": {"index_info": {"class_index": 2}}}}
    (tmp_path / "mutr/key_frame.json").write_text(json.dumps(key_frames))
    meta = {
        "videos": {
            v: {"expressions": {e: {"exp": "x"} for e in ("2", "0", "1")}, "frames": list(FRAMES)}
            for v in ("v1", "v2")
        }
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    argv = ["import-masks", str(tmp_path / "mutr"), "--out", str(tmp_path / "ms")]
    assert (
        main(
            [
                *argv,
                "--scores",
                str(tmp_path / "scores.json"),
                "--meta",
                str(tmp_path / "meta.json"),
            ]
        )
        == 0
    )
    ms = MaskSet(tmp_path / "ms")
    assert ms.videos() == ["v1", "v2"] and ms.expressions("v1") == ["2", "0", "1"]
    np.testing.assert_allclose(ms.read("v1", "1").scores, [0.1, 0.5, 0.2])
    assert ms.read("v2", "1").scores is None
    assert ms.key_frames("v1") == {"0": 2} and ms.key_frames("v2") == {}
    for (video, exp), stack in data.items():
        np.testing.assert_array_equal(ms.read(video, exp).masks, stack)
    # a meta frame the source lacks is an error naming the item
    meta["videos"]["v2"]["frames"].append("00015")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match=r"video v2 expression 2: frames differ.*00015"):
        import_masks(
            tmp_path / "mutr", tmp_path / "ms2", meta=read_split_meta(tmp_path / "meta.json")
        )
    assert MaskSet(tmp_path / "ms2").videos() == ["v1"]
    bad_scores = {"v1": {"0": [1, 2]}}
    with pytest.raises(InputFileError, match="2 values"):
        import_masks(tmp_path / "mutr", tmp_path / "ms3", scores=bad_scores)


def test_import_corrupt_png_names_it_and_leaves_no_partial_video(tmp_path: Path) -> None:
    _upstream_folder(tmp_path / "rf", np.random.default_rng(4))
    bad = tmp_path / "rf/Annotations/v2/1/00005.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InputFileError, match=re.escape(str(bad))):
        import_masks(tmp_path / "rf", tmp_path / "ms")
    ms = MaskSet(tmp_path / "ms")
    assert ms.videos() == ["v1"] and not (tmp_path / "ms/tracks/v2").exists()
    leftovers = [p for p in (tmp_path / "ms").rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    # fixing the file and running again resumes: v1 is kept, v2 imported
    bad.write_bytes(encode_mask_png(np.zeros((6, 7), bool)))
    report = import_masks(tmp_path / "rf", tmp_path / "ms")
    assert (report.videos, report.skipped) == (1, 1) and ms.videos() == ["v1", "v2"]


def test_rle_strings_are_pycocotools_own() -> None:
    from pipeline.core.masks.rle import COLUMN_MAJOR, ROW_MAJOR, decode_masks, encode_masks

    rng = np.random.default_rng(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools under numpy 2
        for trial in range(120):
            H, W = int(rng.integers(1, 50)), int(rng.integers(1, 50))
            masks = rng.random((2, H, W)) < rng.random()
            if trial % 4 == 1:
                masks[0] = True  # a run longer than 2^15, negative deltas, leading ones
            elif trial % 4 == 2:
                masks[:] = False
            for order in (ROW_MAJOR, COLUMN_MAJOR):
                ours = encode_masks(masks, order)
                theirs = [
                    mask_utils.encode(
                        np.ascontiguousarray(m).T if order == ROW_MAJOR else np.asfortranarray(m)
                    )["counts"].decode()
                    for m in masks
                ]
                assert ours == theirs
                np.testing.assert_array_equal(decode_masks(ours, (H, W), order), masks)
        big = np.zeros((1, 720, 1280), bool)
        big[0, 650:, 1100:] = True
        (counts,) = encode_masks(big, COLUMN_MAJOR)
        np.testing.assert_array_equal(
            mask_utils.decode({"size": [720, 1280], "counts": counts}), big[0]
        )
    with pytest.raises(ValueError, match="covers"):
        decode_masks(encode_masks(big), (720, 1279))


def test_import_ensemble_dump_logits_and_probabilities(tmp_path: Path) -> None:
    import torch

    from pipeline.adapters.dumps import import_dump
    from pipeline.core.vote import VoteSpec, vote_video

    rng = np.random.default_rng(8)
    logits = {e: torch.from_numpy(rng.normal(size=(3, 5, 6)).astype(np.float32)) for e in "012"}
    scores = {"0": [0.1, 0.9, 0.3], "1": [0.5, 0.2, 0.7], "2": [0.0, 0.0, 1.0]}
    dump = {"v1": {e: {"mask_logits": logits[e], "class_info": scores[e]} for e in "012"}}
    torch.save(dump, tmp_path / "soc.pth")
    meta = {
        "videos": {"v1": {"expressions": {e: {"exp": "x"} for e in "012"}, "frames": list(FRAMES)}}
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    argv = ["import-masks", str(tmp_path / "soc.pth"), "--out", str(tmp_path / "soc")]
    assert main(argv) == 2  # a dump needs the meta for frame names
    assert main([*argv, "--meta", str(tmp_path / "meta.json")]) == 0
    soc = MaskSet(tmp_path / "soc")
    np.testing.assert_array_equal(soc.read("v1", "1").masks, logits["1"].numpy() > 0)
    assert soc.key_frames("v1") == {"0": 1, "1": 2, "2": 2} and soc.read("v1", "0").probs is None
    # UNINEXT dumps hold probabilities; the sigmoid-twice vote needs them kept
    probs = {e: torch.sigmoid(t) for e, t in logits.items()}
    torch.save(
        {"v1": {e: {"mask_logits": probs[e], "class_info": scores[e]} for e in "012"}},
        tmp_path / "vit.pth",
    )
    vit = MaskSet(tmp_path / "vit")
    import_dump(
        tmp_path / "vit.pth",
        vit,
        read_split_meta(tmp_path / "meta.json"),
        values="probs",
        keep_probs=True,
    )
    np.testing.assert_array_equal(vit.read("v1", "2").masks, probs["2"].numpy() > 0.5)
    spec = VoteSpec(("vit", "soc"), pairs=True, odd_policy="first_source", sigmoid_twice=True)
    tracks = [{e: ms.read("v1", e) for e in "012"} for ms in (vit, soc)]
    fused, _ = vote_video(tracks, ["0", "1", "2"], spec)
    assert fused["2"].masks.all()  # sigmoid(p) > 0.5 holds for every probability p > 0
    bad = {"v1": {"0": {"mask_logits": logits["0"][:2], "class_info": scores["0"]}}}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(InputFileError, match="expression 0: \\(2, 5, 6\\) masks"):
        import_dump(tmp_path / "bad.pth", tmp_path / "bad", read_split_meta(tmp_path / "meta.json"))
    assert MaskSet(tmp_path / "bad").videos() == []
