"""J and F against independent oracles (the DAVIS definitions re-derived here with skimage's
disk and cv2.dilate, and the vos-benchmark package where installed), protocols, tables, CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.morphology import disk as sk_disk

from pipeline.cli import main
from pipeline.core.data import open_dataset
from pipeline.core.data.synth import write_synthetic_benchmark
from pipeline.core.errors import UserError
from pipeline.core.io import encode_mask_png
from pipeline.core.masks import MaskSet, Track, open_masks
from pipeline.core.scoring import (
    boundary_map,
    boundary_radius,
    disk,
    j_and_f,
    score_mask_set,
    score_video,
)

# ---------------------------------------------------------------------------------------------
# the oracle: DAVIS 2017 definitions, frame by frame, written from metrics.md


def oracle_seg2bmap(seg: np.ndarray) -> np.ndarray:
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def oracle_j(gt: np.ndarray, pred: np.ndarray) -> float:
    inter = np.sum(gt.astype(bool) & pred.astype(bool))
    union = np.sum(gt.astype(bool) | pred.astype(bool))
    return 1.0 if np.isclose(union, 0) else inter / union


def oracle_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    bound_pix = np.ceil(bound_th * np.linalg.norm(pred.shape))
    fg_b, gt_b = oracle_seg2bmap(pred), oracle_seg2bmap(gt)
    kernel = sk_disk(int(bound_pix)).astype(np.uint8)
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel)
    n_fg, n_gt = np.sum(fg_b), np.sum(gt_b)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg_b * gt_dil) / float(n_fg)
        recall = np.sum(gt_b * fg_dil) / float(n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _random_stack(rng: np.random.Generator, T: int, H: int, W: int, kind: int) -> np.ndarray:
    if kind == 0:  # noise: dense boundaries
        return rng.random((T, H, W)) < rng.uniform(0.2, 0.8)
    out = np.zeros((T, H, W), np.uint8)
    for k in range(T):
        if rng.random() < 0.25:
            continue  # an empty frame
        if kind == 3 and rng.random() < 0.3:
            out[k] = 1  # a full frame
            continue
        for _ in range(int(rng.integers(1, 4))):
            centre = (int(rng.integers(-5, W + 5)), int(rng.integers(-5, H + 5)))
            radius = int(rng.integers(0, max(H, W) // 2 + 1))
            if kind == 1:
                cv2.circle(out[k], centre, radius, 1, -1)
            else:
                cv2.rectangle(out[k], centre, (centre[0] + radius, centre[1] + radius // 2), 1, -1)
    return out.astype(bool)


def test_j_and_f_equal_the_davis_definitions_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    compared = empty_cases = 0
    for trial in range(160):
        H, W = int(rng.integers(1, 70)), int(rng.integers(1, 70))
        if trial % 20 == 0:
            H, W = int(rng.integers(300, 500)), int(rng.integers(300, 860))  # larger radii
        T = 3
        pred = _random_stack(rng, T, H, W, int(rng.integers(4)))
        gt = _random_stack(rng, T, H, W, int(rng.integers(4)))
        if trial % 7 == 0:
            pred[0] = False  # pin the empty cases
            gt[1] = False
        j, f = j_and_f(pred, gt)
        for k in range(T):
            assert abs(j[k] - oracle_j(gt[k], pred[k])) <= 1e-9
            assert abs(f[k] - oracle_f(pred[k], gt[k])) <= 1e-9
            compared += 1
            empty_cases += int(not pred[k].any() or not gt[k].any())
    assert compared == 480 and empty_cases > 50


def test_empty_case_values_and_radius_and_disk() -> None:
    z = np.zeros((1, 20, 30), bool)
    one = z.copy()
    one[0, 5:9, 5:12] = True
    assert j_and_f(z, z) == (pytest.approx([1.0]), pytest.approx([1.0]))
    j, f = j_and_f(z, one)
    assert (j[0], f[0]) == (0.0, 0.0)
    j, f = j_and_f(one, z)
    assert (j[0], f[0]) == (0.0, 0.0)
    assert boundary_radius(480, 854) == 8
    assert boundary_radius(720, 1280) == 12
    assert boundary_radius(1080, 1920) == 18
    assert disk(8).sum() == 197 and disk(18).sum() == 1009
    for r in (1, 3, 8, 12, 18):
        np.testing.assert_array_equal(disk(r), sk_disk(r))
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17))
    assert ellipse.sum() != disk(8).sum()  # the toolkit's disk is not cv2's ellipse
    rng = np.random.default_rng(5)
    m = rng.random((4, 9, 11)) < 0.5
    np.testing.assert_array_equal(boundary_map(m), np.stack([oracle_seg2bmap(x) for x in m]))


def test_vos_benchmark_package_agrees() -> None:
    evaluator = pytest.importorskip("vos_benchmark.evaluator", reason="vos-benchmark not installed")
    rng = np.random.default_rng(1)
    for _ in range(40):
        H, W = int(rng.integers(5, 80)), int(rng.integers(5, 80))
        pred = _random_stack(rng, 2, H, W, int(rng.integers(1, 4)))
        gt = _random_stack(rng, 2, H, W, int(rng.integers(1, 4)))
        j, f = j_and_f(pred, gt)
        for k in range(2):
            ev = evaluator.Evaluator()
            ev.feed_frame(pred[k].astype(np.uint8), gt[k].astype(np.uint8))
            if not ev.object_iou:  # both empty: the package records nothing
                assert j[k] == f[k] == 1.0
                continue
            assert abs(ev.object_iou[1][0] - j[k]) <= 1e-9
            assert abs(ev.boundary_f[1][0] - f[k]) <= 1e-9


def test_protocols_drop_frames_and_score_missing_as_zero() -> None:
    frames = ("a", "b", "c", "d")
    gt = np.zeros((4, 8, 8), bool)
    gt[:, 2:6, 2:6] = True
    pred = gt.copy()
    pred[0] = False  # wrong on the first and last frame only
    pred[3] = False
    track = Track(frames, pred)
    ytvos = score_video({"0": track}, {"0": gt, "1": gt}, frames, protocol="ytvos", video="v")
    assert (ytvos[0].J, ytvos[0].F) == (0.5, 0.5)
    assert ytvos[1].missing and ytvos[1].J == ytvos[1].F == 0.0
    davis = score_video({"0": track}, {"0": gt}, frames, protocol="davis", video="v")
    assert davis[0].J == davis[0].F == 1.0 and davis[0].frames == 2
    extra = Track(("z", *frames), np.concatenate([gt[:1], pred]))  # extra frames are ignored
    assert score_video({"0": extra}, {"0": gt}, frames)[0].J == 0.5
    with pytest.raises(UserError, match="lacks 1 listed frame"):
        score_video({"0": Track(frames[:3], pred[:3])}, {"0": gt}, frames, video="v")
    with pytest.raises(UserError, match="prediction is 4x4"):
        score_video({"0": Track(frames, pred[:, :4, :4])}, {"0": gt}, frames, video="v")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_benchmark(tmp_path_factory.mktemp("score"), seed=2, videos=3)


def test_score_mask_set_and_cli_contract(synth: Path, tmp_path: Path) -> None:
    ds = open_dataset("ytvos", synth, "valid")
    perfect = MaskSet(tmp_path / "perfect")
    shifted = tmp_path / "shifted"  # the submission layout, ground truth shifted by 2 pixels
    expected_j = {}
    for video in ds.videos():
        for exp in ds.expressions(video.id):
            gt = ds.ground_truth(video.id, exp.id)
            perfect.write(video.id, exp.id, Track(video.frame_ids, gt))
            moved = np.roll(gt, 2, axis=2)
            folder = shifted / "Annotations" / video.id / exp.id
            folder.mkdir(parents=True)
            for fid, m in zip(video.frame_ids, moved, strict=True):
                (folder / f"{fid}.png").write_bytes(encode_mask_png(m))
            expected_j[f"{video.id}/{exp.id}"] = np.mean(
                [oracle_j(g, p) for g, p in zip(gt, moved, strict=True)]
            )
        perfect.mark_complete(video.id)
    table = score_mask_set(perfect, ds)
    assert table.J == table.F == table.JF == 1.0 and not table.missing
    out = tmp_path / "scores.json"
    argv = ["eval", "--pred", str(shifted), "--gt", str(synth), "--split", "valid"]
    assert main([*argv, "--json", str(out), "--csv", str(tmp_path / "rows.csv")]) == 0
    scores = json.loads(out.read_text())
    assert {"J", "F", "JF", "per_expression"} <= set(scores)
    assert 0 < scores["J"] < 1 and scores["JF"] == pytest.approx((scores["J"] + scores["F"]) / 2)
    for key, value in expected_j.items():
        assert scores["per_expression"][key]["J"] == pytest.approx(value, abs=1e-12)
    assert scores["J"] == pytest.approx(np.mean(list(expected_j.values())))
    rows = (tmp_path / "rows.csv").read_text().splitlines()
    assert rows[0] == "video,expression,J,F,JF,frames,missing" and len(rows) == 1 + len(expected_j)
    # a zip of the same masks scores the same; parallel scoring too
    zpath = tmp_path / "sub.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(shifted.rglob("*.png")):
            zf.write(p, p.relative_to(shifted).as_posix())
    zipped = score_mask_set(open_masks(zpath), ds, workers=2)
    assert zipped.per_expression() == scores["per_expression"]
    # a video without predictions scores 0 and is reported
    first = ds.videos()[0].id
    partial = MaskSet(tmp_path / "partial")
    for video in ds.videos()[1:]:
        for exp in ds.expressions(video.id):
            partial.write(
                video.id, exp.id, Track(video.frame_ids, ds.ground_truth(video.id, exp.id))
            )
        partial.mark_complete(video.id)
    table = score_mask_set(partial, ds)
    assert table.missing == [f"{first}/{e.id}" for e in ds.expressions(first)]
    assert table.per_video()[first]["JF"] == 0.0


def test_range_queries_equal_dilation_counts() -> None:
    from pipeline.core.scoring import _count_near, _Disk

    rng = np.random.default_rng(3)
    for _ in range(60):
        H, W = int(rng.integers(2, 90)), int(rng.integers(2, 90))
        shape = _Disk(int(rng.integers(1, 20)))
        a = boundary_map(_random_stack(rng, 1, H, W, int(rng.integers(4)))[0])
        b = boundary_map(_random_stack(rng, 1, H, W, int(rng.integers(4)))[0])
        if not a.any() or not b.any():
            continue
        dense = np.count_nonzero(a.view(np.uint8) & cv2.dilate(b.view(np.uint8), shape.kernel))
        assert _count_near(np.flatnonzero(a), np.flatnonzero(b), W, H, shape) == dense


def test_missing_expressions_are_named_in_the_table_and_summary() -> None:
    from pipeline.core.scoring import ExpressionScore, ScoreTable

    rows = [
        ExpressionScore("vid", "0", 0.0, 0.0, 3, missing=True),
        ExpressionScore("vid", "1", 1.0, 1.0, 3),
        ExpressionScore("vid", "3", 0.0, 0.0, 3, missing=True),
    ]
    table = ScoreTable(rows, "mevis")
    assert table.missing_pairs == [("vid", "0"), ("vid", "3")]
    assert table.missing == ["vid/0", "vid/3"]
    assert table.to_dict()["missing"] == ["vid/0", "vid/3"]
    assert abs(table.JF - 1 / 3) < 1e-12  # the stricter rule: a missing expression counts 0
    lines = table.summary().splitlines()
    assert lines[0].startswith("J&F 33.33") and lines[1].startswith(
        "missing: 2 expressions (vid/0, vid/3)"
    )
    one = ScoreTable(rows[:2], "ytvos")
    assert one.missing_report() == "missing: 1 expression (vid/0), scored 0"
    many = ScoreTable([ExpressionScore("v", str(i), 0, 0, 1, missing=True) for i in range(5)], "")
    assert many.missing_report(limit=2) == "missing: 5 expressions (v/0, v/1, ... 3 more), scored 0"
    assert ScoreTable(rows[1:2], "ytvos").missing_report() == ""
    assert "\n" not in ScoreTable(rows[1:2], "ytvos").summary()


def test_a_missing_expression_of_a_predicted_video_scores_zero_and_eval_names_it(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    ds = open_dataset("ytvos", synth, "valid")
    partial = MaskSet(tmp_path / "partial")
    dropped = []
    for video in ds.videos():
        exps = ds.expressions(video.id)
        dropped.append((video.id, exps[0].id))
        for exp in exps[1:]:
            partial.write(
                video.id, exp.id, Track(video.frame_ids, ds.ground_truth(video.id, exp.id))
            )
        partial.mark_complete(video.id)
    table = score_mask_set(partial, ds)
    assert table.missing_pairs == dropped
    n = len(table.rows)
    assert abs(table.J - (n - len(dropped)) / n) < 1e-12  # each dropped one counts as 0
    argv = ["eval", "--pred", str(tmp_path / "partial"), "--gt", str(synth), "--split", "valid"]
    assert main(argv) == 0
    names = ", ".join(f"{v}/{e}" for v, e in dropped)
    out = capsys.readouterr().out
    assert f"missing: {len(dropped)} expressions ({names}), scored 0" in out
    import pipeline.core.scoring as scoring

    monkeypatch.setattr(scoring, "MISSING_SHOWN", 1)
    assert main(argv) == 0
    assert "(--json or --csv lists them all)" in capsys.readouterr().out
