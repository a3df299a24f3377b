"""Dataset readers refuse what would silently score wrong or escape the dataset root: an
``obj_id`` no annotation has, an ``anno_id`` missing from mask_dict.json, and ids that are not
one plain path component."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.core.data import open_dataset
from pipeline.core.errors import InputFileError

FRAMES = ["00000", "00005", "00010"]


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _ytvos(
    root: Path,
    obj_ids: dict[str, str],
    *,
    listed: dict[str, list[str]] | None,
    labels: tuple[int, ...] = (1, 2),
) -> Path:
    """A one-video ytvos split ``train`` with palette annotations holding ``labels``, the
    expressions ``{exp_id: obj_id}`` and, unless ``listed`` is None, a ``meta.json`` listing
    ``{video: [object ids]}``."""
    meta = {
        "videos": {
            "vid": {
                "expressions": {e: {"exp": f"text {e}", "obj_id": o} for e, o in obj_ids.items()},
                "frames": FRAMES,
            }
        }
    }
    _write_json(root / "meta_expressions/train/meta_expressions.json", meta)
    if listed is not None:
        objects = {v: {"objects": {o: {"category": "x"} for o in ids}} for v, ids in listed.items()}
        _write_json(root / "train/meta.json", {"videos": objects})
    folder = root / "train/Annotations/vid"
    folder.mkdir(parents=True)
    for k, fid in enumerate(FRAMES):
        lab = np.zeros((4, 6), np.uint8)
        for i, value in enumerate(labels):
            lab[i, k] = value
        image = Image.fromarray(lab, mode="P")
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
        image.save(folder / f"{fid}.png")
    return root / "meta_expressions/train/meta_expressions.json"


def _message(meta: Path, exp: str, obj_id: int) -> str:
    return rf"{re.escape(str(meta))}: video vid expression {exp} names obj_id {obj_id}\b"


def test_unlisted_obj_id_is_refused_when_opening_from_meta_json(tmp_path: Path) -> None:
    meta = _ytvos(tmp_path, {"0": "1", "1": "7"}, listed={"vid": ["1", "2"]})
    with pytest.raises(InputFileError, match=_message(meta, "1", 7) + r".*train/meta\.json"):
        open_dataset("ytvos", tmp_path, "train")


def test_listed_obj_ids_open_and_give_their_ground_truth(tmp_path: Path) -> None:
    _ytvos(tmp_path, {"0": "1", "1": "2"}, listed={"vid": ["1", "2"]})
    ds = open_dataset("ytvos", tmp_path, "train")
    gt = ds.ground_truth("vid", "1")
    assert gt is not None and gt.shape == (3, 4, 6)
    assert [tuple(np.argwhere(g)[0]) for g in gt] == [(1, 0), (1, 1), (1, 2)]


def test_without_meta_json_an_absent_obj_id_is_refused_from_the_annotations(
    tmp_path: Path,
) -> None:
    meta = _ytvos(tmp_path, {"0": "1", "1": "3", "2": "300"}, listed=None)
    ds = open_dataset("ytvos", tmp_path, "train")  # no listing: nothing is decoded yet
    assert ds.ground_truth("vid", "0") is not None
    with pytest.raises(InputFileError, match=_message(meta, "1", 3) + ".*Annotations/vid"):
        ds.ground_truth("vid", "1")
    with pytest.raises(InputFileError, match=_message(meta, "2", 300)):
        ds.ground_truth("vid", "2")


def test_a_video_missing_from_meta_json_is_checked_from_its_annotations(tmp_path: Path) -> None:
    meta = _ytvos(tmp_path, {"0": "2", "1": "5"}, listed={"other": ["1"]})
    ds = open_dataset("ytvos", tmp_path, "train")
    assert ds.ground_truth("vid", "0").any()
    with pytest.raises(InputFileError, match=_message(meta, "1", 5)):
        ds.ground_truth("vid", "1")


def test_without_annotations_obj_ids_are_not_checked(tmp_path: Path) -> None:
    _ytvos(tmp_path, {"0": "9"}, listed={"vid": ["1"]})
    shutil.rmtree(tmp_path / "train/Annotations")
    ds = open_dataset("ytvos", tmp_path, "train")
    assert not ds.has_ground_truth and ds.ground_truth("vid", "0") is None


def test_malformed_meta_json_names_itself(tmp_path: Path) -> None:
    _ytvos(tmp_path, {"0": "1"}, listed=None)
    _write_json(tmp_path / "train/meta.json", {"videos": {"vid": {"objects": {"one": {}}}}})
    with pytest.raises(InputFileError, match=r"train/meta\.json: malformed objects of video vid"):
        open_dataset("ytvos", tmp_path, "train")


def test_mevis_anno_id_missing_from_mask_dict_is_refused(tmp_path: Path) -> None:
    meta = {
        "videos": {
            "vid": {
                "expressions": {"0": {"exp": "x", "obj_id": [0], "anno_id": [42]}},
                "frames": FRAMES,
            }
        }
    }
    _write_json(tmp_path / "valid_u/meta_expressions.json", meta)
    _write_json(tmp_path / "valid_u/mask_dict.json", {"41": [None, None, None]})
    ds = open_dataset("mevis", tmp_path, "valid_u")
    with pytest.raises(
        InputFileError, match=r"mask_dict\.json: no anno_id 42 \(video vid, expression 0\)"
    ):
        ds.ground_truth("vid", "0")


BAD_IDS = ["../x", "..", ".", "", "a/b", "a\\b", "/abs"]


def _meta_with(video: str = "vid", exp: str = "0", frame: str = "00000") -> dict:
    return {"videos": {video: {"expressions": {exp: {"exp": "t"}}, "frames": [frame]}}}


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("kind", ["video", "expression", "frame"])
def test_ids_that_are_not_plain_names_are_refused(tmp_path: Path, kind: str, bad: str) -> None:
    meta = {"video": _meta_with(video=bad), "expression": _meta_with(exp=bad)}.get(
        kind, _meta_with(frame=bad)
    )
    ytvos = tmp_path / "meta_expressions/valid/meta_expressions.json"
    mevis = tmp_path / "valid/meta_expressions.json"
    for fmt, path in (("ytvos", ytvos), ("mevis", mevis)):
        _write_json(path, meta)
        with pytest.raises(
            InputFileError, match=rf"{re.escape(str(path))}: {kind} id {re.escape(repr(bad))}"
        ):
            open_dataset(fmt, tmp_path, "valid")


def test_plain_ids_with_dots_inside_are_kept(tmp_path: Path) -> None:
    _write_json(
        tmp_path / "meta_expressions/valid/meta_expressions.json",
        _meta_with(video="a..b", exp="0.5", frame="..00"),
    )
    ds = open_dataset("ytvos", tmp_path, "valid")
    assert ds.video_ids() == ["a..b"] and ds.expressions("a..b")[0].id == "0.5"
