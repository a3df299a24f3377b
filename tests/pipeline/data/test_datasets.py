"""Dataset readers: lazy indexing, split rules, expression order, ground truth, bad files."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from pipeline.core.data import open_dataset
from pipeline.core.data.synth import write_synthetic_benchmark
from pipeline.core.errors import InputFileError, UserError


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _ytvos_meta(videos: dict[str, list[str]], frames: int = 3, obj: bool = False) -> dict:
    return {
        "videos": {
            vid: {
                "expressions": {
                    e: ({"exp": f"text {e}", "obj_id": "1"} if obj else {"exp": f"text {e}"})
                    for e in exps
                },
                "frames": [f"{5 * i:05d}" for i in range(frames)],
            }
            for vid, exps in videos.items()
        }
    }


def test_indexing_500_videos_is_fast_and_reads_no_image(tmp_path: Path, monkeypatch) -> None:
    meta = _ytvos_meta({f"v{i:04d}": ["0", "1", "2"] for i in range(500)}, frames=36)
    _write_json(tmp_path / "meta_expressions/valid/meta_expressions.json", meta)

    def no_image(*args, **kwargs):
        raise AssertionError("an image was opened while indexing")

    monkeypatch.setattr(Image, "open", no_image)
    start = time.perf_counter()
    dataset = open_dataset("ytvos", tmp_path, "valid")
    videos = dataset.videos()
    n_exp = sum(len(dataset.expressions(v.id)) for v in videos)
    paths = [v.frame_paths for v in videos]
    elapsed = time.perf_counter() - start
    assert len(videos) == 500 and n_exp == 1500 and len(paths[0]) == 36
    assert elapsed < 1.0, f"indexing took {elapsed:.2f} s"


def test_valid_is_valid_minus_test_and_order_is_kept(tmp_path: Path) -> None:
    valid = _ytvos_meta({"b": ["1", "0", "10", "2"], "a": ["0"], "t1": ["0"], "t2": ["0", "1"]})
    test = _ytvos_meta({"t1": ["0"], "t2": ["0", "1"]})
    _write_json(tmp_path / "meta_expressions/valid/meta_expressions.json", valid)
    _write_json(tmp_path / "meta_expressions/test/meta_expressions.json", test)
    ds = open_dataset("ytvos", tmp_path, "valid")
    assert [v.id for v in ds.videos()] == ["a", "b"]
    assert [e.id for e in ds.expressions("b")] == ["1", "0", "10", "2"]  # the file's key order
    assert ds.expressions("b")[0].text == "text 1" and ds.expressions("b")[0].obj_ids is None
    assert not ds.has_ground_truth and ds.ground_truth("b", "0") is None
    assert ds.video("a").frame_paths[1] == tmp_path / "valid/JPEGImages/a/00005.jpg"
    assert [v.id for v in open_dataset("ytvos", tmp_path, "test").videos()] == ["t1", "t2"]
    # Ref-DAVIS17 in the same layout has no such rule
    assert len(open_dataset("davis", tmp_path, "valid")) == 4
    with pytest.raises(UserError, match="'zz'"):
        ds.video("zz")
    with pytest.raises(InputFileError, match=r"meta_expressions\.json is missing"):
        open_dataset("ytvos", tmp_path, "train")
    with pytest.raises(UserError, match="unknown dataset format"):
        open_dataset("coco", tmp_path, "valid")


def test_malformed_meta_names_file_and_video(tmp_path: Path) -> None:
    path = tmp_path / "meta_expressions/train/meta_expressions.json"
    _write_json(path, {"videos": {"ok": {"expressions": {}, "frames": []}, "bad": {"frames": []}}})
    with pytest.raises(InputFileError, match=r"meta_expressions\.json.*video bad"):
        open_dataset("ytvos", tmp_path, "train")
    path.write_text("{not json")
    with pytest.raises(InputFileError, match="not valid JSON"):
        open_dataset("ytvos", tmp_path, "train")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_benchmark(tmp_path_factory.mktemp("ds"), seed=1, videos=2)


def test_synthetic_ground_truth_and_frames(synth: Path) -> None:
    ds = open_dataset("ytvos", synth, "valid")
    assert ds.has_ground_truth
    video = ds.videos()[0]
    frames = ds.read_frames(video.id)
    assert frames.dtype == np.uint8 and frames.shape == (video.num_frames, *video.size, 3)
    for exp in ds.expressions(video.id):
        gt = ds.ground_truth(video.id, exp.id)
        labels = np.stack(
            [
                np.asarray(Image.open(synth / "valid/Annotations" / video.id / f"{f}.png"))
                for f in video.frame_ids
            ]
        )
        assert gt is not None and gt.dtype == bool
        np.testing.assert_array_equal(gt, labels == exp.obj_ids[0])


def test_corrupt_jpeg_and_png_name_the_file(synth: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth, root)
    ds = open_dataset("ytvos", root, "train")
    video = ds.videos()[0]
    jpeg = video.frame_paths[2]
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    with pytest.raises(InputFileError, match=re.escape(str(jpeg))):
        ds.read_frames(video.id)
    png = root / "train/Annotations" / video.id / f"{video.frame_ids[1]}.png"
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(InputFileError, match=re.escape(str(png))):
        ds.ground_truth(video.id, "0")
    png.unlink()
    with pytest.raises(InputFileError, match=re.escape(str(png))):
        ds.ground_truth(video.id, ds.expressions(video.id)[-1].id)


def test_mevis_ground_truth_is_the_union_of_anno_ids(tmp_path: Path) -> None:
    T, H, W = 3, 6, 8
    a = np.zeros((T, H, W), np.uint8)
    b = np.zeros((T, H, W), np.uint8)
    a[0, 1:3, 1:3] = 1
    a[2, 0, :] = 1
    b[0, 2:5, 2:6] = 1

    def rles(m: np.ndarray, absent: set[int]) -> list:
        out = []
        for k in range(T):
            if k in absent:
                out.append(None)
                continue
            r = mask_utils.encode(np.asfortranarray(m[k]))
            out.append({"size": r["size"], "counts": r["counts"].decode("ascii")})
        return out

    meta = {
        "videos": {
            "vid": {
                "expressions": {
                    "0": {"exp": "both", "obj_id": [0, 1], "anno_id": [10, 11]},
                    "1": {"exp": "one", "obj_id": [1], "anno_id": [11]},
                },
                "frames": ["00000", "00001", "00002"],
            }
        }
    }
    _write_json(tmp_path / "valid_u/meta_expressions.json", meta)
    _write_json(tmp_path / "valid_u/mask_dict.json", {"10": rles(a, set()), "11": rles(b, {1, 2})})
    ds = open_dataset("mevis", tmp_path, "valid_u")
    assert ds.has_ground_truth
    assert ds.expressions("vid")[0].obj_ids == (0, 1)
    np.testing.assert_array_equal(ds.ground_truth("vid", "0"), (a | b).astype(bool))
    np.testing.assert_array_equal(ds.ground_truth("vid", "1"), b.astype(bool))
    _write_json(tmp_path / "valid/meta_expressions.json", meta)
    assert not open_dataset("mevis", tmp_path, "valid").has_ground_truth
    _write_json(tmp_path / "valid_u/mask_dict.json", {"10": rles(a, set())[:2], "11": []})
    with pytest.raises(InputFileError, match="anno_id 10 has 2 frames"):
        open_dataset("mevis", tmp_path, "valid_u").ground_truth("vid", "0")
