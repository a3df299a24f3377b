"""MeViS valid_u scored exactly as ``tools/eval_mevis.py`` of henghuiding/MeViS@7c0620b does.

The oracle here is an independent re-derivation of that script, in plain numpy, pycocotools and
OpenCV's PNG reader, written from its loop and from ``tools/metrics.py`` (byte-identical to
``davis2017/metrics.py`` of davis2017-evaluation@ac7c43f: git blob 2bb2724 in both):

* per (video, expression), in ``meta_expressions.json`` order: a missing video folder gives
  ``[0, 0]``; else the size comes from ``<video>/<exp>/00000.png``; GT per frame is the uint8
  sum of ``pycocotools.mask.decode`` over the expression's ``anno_id``s (a null entry adds
  nothing); the prediction is ``cv2.imread(..., IMREAD_GRAYSCALE)``; both cast to bool;
* ``db_eval_iou``: |P ∩ G| / |P ∪ G| per frame, 1 where the union is 0;
* ``f_measure``: ``_seg2bmap`` boundaries, dilated by the disk of radius
  ``ceil(0.008 * ||(H, W)||)``, precision / recall, the empty-boundary cases;
* J and F of an expression: the means over all its frames; J, F: the means over expressions;
  J&F = (J + F) / 2.

A missing expression folder of a predicted video makes ``cv2.imread`` return None and the
worker raise on ``pred_0.shape``: that expression never reaches the output dict and drops out
of the mean. The project scores it 0 instead (``pipeline.core.scoring``); the last test pins
both numbers.
"""

from __future__ import annotations

import json
import math
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from pipeline.cli import main
from pipeline.core.data import open_dataset
from pipeline.core.data.synth_mevis import write_synthetic_mevis_benchmark
from pipeline.core.errors import UserError
from pipeline.core.io import encode_mask_png
from pipeline.core.masks import open_masks
from pipeline.core.scoring import score_mask_set

# ---------------------------------------------------------------------------------------------
# the re-derivation of eval_mevis.py (no project code)


def _official_iou(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``db_eval_iou(annotation, segmentation)`` on ``T x H x W`` arrays: one value per frame."""
    g, p = gt.astype(bool), pred.astype(bool)
    inters = np.sum(p & g, axis=(-2, -1))
    union = np.sum(p | g, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inters / union
    j[np.isclose(union, 0)] = 1
    return j


def _official_bmap(seg: np.ndarray) -> np.ndarray:
    """``_seg2bmap``: a pixel differs from its east, south or south-east neighbour (zero
    outside); the last row compares east only, the last column south only, the corner is 0."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def _dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by {(dy, dx): dy² + dx² <= r²} (skimage's disk), zero outside the image:
    the OR of the shifted copies, one per offset of the disk."""
    H, W = mask.shape
    padded = np.zeros((H + 2 * radius, W + 2 * radius), bool)
    padded[radius : radius + H, radius : radius + W] = mask
    out = np.zeros_like(mask)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out |= padded[radius + dy : radius + dy + H, radius + dx : radius + dx + W]
    return out


def _official_f(fg_mask: np.ndarray, gt_mask: np.ndarray, bound_th: float = 0.008) -> float:
    """``f_measure(foreground_mask, gt_mask)`` of one frame."""
    radius = int(np.ceil(bound_th * np.linalg.norm(fg_mask.shape)))
    fg_b, gt_b = _official_bmap(fg_mask), _official_bmap(gt_mask)
    fg_match = fg_b & _dilate_disk(gt_b, radius)
    gt_match = gt_b & _dilate_disk(fg_b, radius)
    n_fg, n_gt = np.sum(fg_b), np.sum(gt_b)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision, recall = np.sum(fg_match) / float(n_fg), np.sum(gt_match) / float(n_gt)
    if precision + recall == 0:
        return 0
    return 2 * precision * recall / (precision + recall)


def official_eval_mevis(pred_root: Path, split_root: Path) -> dict[str, list[float]]:
    """``{"<video>_<exp>": [j, f]}`` as eval_mevis.py's ``output_dict``, in meta order; an
    expression whose worker would raise is absent."""
    exp_dict = json.loads((split_root / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split_root / "mask_dict.json").read_text())
    out: dict[str, list[float]] = {}
    for vid_name, vid in exp_dict.items():
        for exp in vid["expressions"]:
            name = f"{vid_name}_{exp}"
            if not (pred_root / vid_name).exists():
                out[name] = [0, 0]
                continue
            pred_0 = cv2.imread(str(pred_root / vid_name / exp / "00000.png"), cv2.IMREAD_GRAYSCALE)
            if pred_0 is None:
                continue  # AttributeError on pred_0.shape: the worker dies, no entry
            h, w = pred_0.shape
            gt = np.zeros((len(vid["frames"]), h, w), np.uint8)
            pred = np.zeros((len(vid["frames"]), h, w), np.uint8)
            for k, frame in enumerate(vid["frames"]):
                for anno_id in vid["expressions"][exp]["anno_id"]:
                    rle = mask_dict[str(anno_id)][k]
                    if rle:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", DeprecationWarning)
                            gt[k] += coco_mask.decode(rle)
                path = pred_root / vid_name / exp / f"{frame}.png"
                pred[k] = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            j = _official_iou(gt, pred).mean()
            f = np.array([_official_f(pred[k], gt[k]) for k in range(len(pred))]).mean()
            out[name] = [j, f]
    return out


def official_totals(scores: dict[str, list[float]]) -> tuple[float, float, float]:
    j = np.mean([v[0] for v in scores.values()])
    f = np.mean([v[1] for v in scores.values()])
    return float(j), float(f), float((j + f) / 2)


# ---------------------------------------------------------------------------------------------
# noisy predictions in the submission layout


def _noisy(gt: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A prediction of ``T x H x W`` ground truth: per frame one of the errors a model makes
    (kept, shifted, grown, shrunk, dropped, a false blob, another expression's target)."""
    out = np.zeros(gt.shape, np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    for k, frame in enumerate(gt.astype(np.uint8)):
        kind = rng.integers(7)
        if kind == 0:
            m = frame
        elif kind == 1:
            m = np.roll(frame, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
        elif kind == 2:
            m = cv2.dilate(frame, kernel, iterations=int(rng.integers(1, 4)))
        elif kind == 3:
            m = cv2.erode(frame, kernel, iterations=int(rng.integers(1, 4)))
        elif kind == 4:
            m = np.zeros_like(frame)
        elif kind == 5:
            m = frame.copy()
            y, x = (
                int(rng.integers(0, frame.shape[0] - 8)),
                int(rng.integers(0, frame.shape[1] - 8)),
            )
            m[y : y + 8, x : x + 11] = 1
        else:
            m = other[k].astype(np.uint8)
        out[k] = m
    # foreground as 255 mostly, but any non-zero value counts
    return out * rng.choice(np.array([255, 255, 255, 1, 128], np.uint8))


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("mevis_scoring")
    data = write_synthetic_mevis_benchmark(root / "mevis", seed=11, videos=4, splits=("valid_u",))
    ds = open_dataset("mevis", data, "valid_u")
    rng = np.random.default_rng(5)
    pred = root / "pred"
    videos = ds.videos()
    skipped = videos[-1].id  # a whole video left out: [0, 0] for each of its expressions
    for video in videos[:-1]:
        exps = ds.expressions(video.id)
        truths = [ds.ground_truth(video.id, e.id) for e in exps]
        for i, exp in enumerate(exps):
            masks = _noisy(truths[i], truths[(i + 1) % len(truths)], rng)
            if i == 0:
                masks[:] = 0  # an expression predicted empty everywhere
            folder = pred / video.id / exp.id
            folder.mkdir(parents=True)
            for frame, m in zip(video.frame_ids, masks, strict=True):
                (folder / f"{frame}.png").write_bytes(encode_mask_png(m))
    return {"ds": ds, "split": data / "valid_u", "pred": pred, "skipped": skipped, "root": root}


def test_scores_equal_the_official_loop(bench: dict) -> None:
    ds = bench["ds"]
    ours = score_mask_set(open_masks(bench["pred"]), ds, "mevis")
    official = official_eval_mevis(bench["pred"], bench["split"])
    assert [f"{r.video}_{r.expression}" for r in ours.rows] == list(official)
    for row in ours.rows:
        j, f = official[f"{row.video}_{row.expression}"]
        assert (j, f) == (row.J, row.F), (row.video, row.expression)
    J, F, JF = official_totals(official)
    assert pytest.approx((J, F), rel=1e-15, abs=0) == (ours.J, ours.F)
    assert pytest.approx(JF, rel=1e-15, abs=0) == ours.JF
    # the noise is real: neither perfect nor nothing, and every error kind met a frame
    assert 0.2 < JF < 0.9
    missing = [r for r in ours.rows if r.missing]
    assert {r.video for r in missing} == {bench["skipped"]}
    assert all((r.J, r.F) == (0.0, 0.0) for r in missing)
    # an expression predicted empty against a target present somewhere: below 1, above 0
    # only through the frames where its target is absent (J = F = 1 there)
    empty = [r for r in ours.rows if r.expression == "0" and not r.missing]
    assert empty and all(r.J == r.F < 1 for r in empty)


def test_multi_object_ground_truth_is_the_union(bench: dict) -> None:
    ds = bench["ds"]
    split = bench["split"]
    meta = json.loads((split / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split / "mask_dict.json").read_text())
    multi = 0
    for video in ds.videos():
        for exp in ds.expressions(video.id):
            annos = meta[video.id]["expressions"][exp.id]["anno_id"]
            truth = ds.ground_truth(video.id, exp.id)
            total = np.zeros(truth.shape, np.uint8)
            for k in range(truth.shape[0]):
                for a in annos:
                    rle = mask_dict[str(a)][k]
                    if rle:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", DeprecationWarning)
                            total[k] += coco_mask.decode(rle)
            assert np.array_equal(truth, total.astype(bool))
            multi += len(annos) > 1
    assert multi > 0


def test_the_cli_and_a_zip_give_the_same_scores(bench: dict) -> None:
    root = bench["root"]
    archive = root / "pred.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(bench["pred"].rglob("*.png")):
            zf.write(path, path.relative_to(bench["pred"]).as_posix())
    out = root / "scores.json"
    args = ["eval", "--pred", str(archive), "--gt", str(bench["split"].parent), "--split"]
    assert main([*args, "valid_u", "--format", "mevis", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    official = official_eval_mevis(bench["pred"], bench["split"])
    J, F, JF = official_totals(official)
    assert scores["protocol"] == "mevis"
    assert (scores["J"], scores["F"], scores["JF"]) == pytest.approx((J, F, JF), rel=1e-15)
    for name, (j, f) in official.items():
        video, exp = name.rsplit("_", 1)
        assert scores["per_expression"][f"{video}/{exp}"] == {"J": j, "F": f}


def test_a_missing_expression_counts_zero_here_and_drops_out_there(
    bench: dict, tmp_path: Path
) -> None:
    """eval_mevis.py's worker dies on a missing expression folder of a predicted video, so
    that expression is left out of its means; the project scores it 0 and names it."""
    ds = bench["ds"]
    video = ds.videos()[0]
    exp = ds.expressions(video.id)[1].id
    pred = tmp_path / "pred"
    for path in bench["pred"].rglob("*.png"):
        rel = path.relative_to(bench["pred"])
        if rel.parts[:2] != (video.id, exp):
            (pred / rel).parent.mkdir(parents=True, exist_ok=True)
            (pred / rel).write_bytes(path.read_bytes())
    official = official_eval_mevis(pred, bench["split"])
    ours = score_mask_set(open_masks(pred), ds, "mevis")
    assert f"{video.id}_{exp}" not in official
    assert (video.id, exp) in ours.missing_pairs
    n = len(ours.rows)
    assert len(official) == n - 1
    J, F, _ = official_totals(official)
    # ours = (sum over the others + 0) / n; the official = the same sum / (n - 1)
    assert pytest.approx(J * (n - 1) / n, rel=1e-12) == ours.J
    assert pytest.approx(F * (n - 1) / n, rel=1e-12) == ours.F
    assert "scored 0" in ours.summary() and f"{video.id}/{exp}" in ours.summary()
    assert not math.isclose(ours.JF, (J + F) / 2)


def test_empty_mask_dict_entries_are_absent_frames_as_there(bench: dict, tmp_path: Path) -> None:
    """eval_mevis.py adds a frame's RLE only ``if mask_rle``: null and an empty entry alike
    mean the object is absent there; the reader treats both so."""
    split = tmp_path / "mevis" / "valid_u"
    split.mkdir(parents=True)
    source = bench["split"]
    (split / "JPEGImages").symlink_to(source / "JPEGImages")
    (split / "meta_expressions.json").write_bytes((source / "meta_expressions.json").read_bytes())
    mask_dict = json.loads((source / "mask_dict.json").read_text())
    emptied = {a: [rle if rle is not None else {} for rle in rles] for a, rles in mask_dict.items()}
    assert any(rle == {} for rles in emptied.values() for rle in rles)
    (split / "mask_dict.json").write_text(json.dumps(emptied))
    ds = open_dataset("mevis", split.parent, "valid_u")
    ours = score_mask_set(open_masks(bench["pred"]), ds, "mevis")
    official = official_eval_mevis(bench["pred"], split)
    assert {f"{r.video}_{r.expression}": [r.J, r.F] for r in ours.rows} == official
    before = score_mask_set(open_masks(bench["pred"]), bench["ds"], "mevis")
    assert [(r.J, r.F) for r in ours.rows] == [(r.J, r.F) for r in before.rows]


def test_a_missing_frame_or_a_wrong_size_is_an_error_naming_it(bench: dict, tmp_path: Path) -> None:
    """Where eval_mevis.py's worker dies (the expression silently drops out), the project
    refuses with the expression's name."""
    ds = bench["ds"]
    video = ds.videos()[0]
    exp = ds.expressions(video.id)[1].id
    for case in ("frame", "size"):
        pred = tmp_path / case
        for path in bench["pred"].rglob("*.png"):
            rel = path.relative_to(bench["pred"])
            (pred / rel).parent.mkdir(parents=True, exist_ok=True)
            (pred / rel).write_bytes(path.read_bytes())
        last = pred / video.id / exp / f"{video.frame_ids[-1]}.png"
        if case == "frame":
            last.unlink()
            expected = rf"video {video.id} expression {exp}: prediction lacks 1 listed frame"
        else:
            for png in (pred / video.id / exp).glob("*.png"):
                png.write_bytes(encode_mask_png(np.zeros((8, 8), bool)))
            expected = rf"video {video.id} expression {exp}: prediction is 8x8"
        with pytest.raises(UserError, match=expected):
            score_mask_set(open_masks(pred), ds, "mevis")


def test_no_target_expressions_score_as_there(bench: dict, tmp_path: Path) -> None:
    """MeViS v2's no-target expressions (``anno_id: []``): empty ground truth in every frame, so
    an empty prediction scores 1 and any foreground loses its frame, in both scorers."""
    split = tmp_path / "mevis" / "valid_u"
    split.mkdir(parents=True)
    source = bench["split"]
    (split / "JPEGImages").symlink_to(source / "JPEGImages")
    (split / "mask_dict.json").write_bytes((source / "mask_dict.json").read_bytes())
    meta = json.loads((source / "meta_expressions.json").read_text())
    video = bench["ds"].videos()[0].id
    expressions = meta["videos"][video]["expressions"]
    for exp in ("0", "1"):  # "0" is predicted empty everywhere, "1" is not
        expressions[exp]["anno_id"], expressions[exp]["obj_id"] = [], []
    (split / "meta_expressions.json").write_text(json.dumps(meta))
    ds = open_dataset("mevis", split.parent, "valid_u")
    ours = score_mask_set(open_masks(bench["pred"]), ds, "mevis")
    official = official_eval_mevis(bench["pred"], split)
    assert {f"{r.video}_{r.expression}": [r.J, r.F] for r in ours.rows} == official
    assert official[f"{video}_0"] == [1.0, 1.0]
    assert official[f"{video}_1"][0] < 1.0
