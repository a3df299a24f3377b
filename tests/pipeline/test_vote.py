"""Voting against hand-worked cases: thresholds, ties, pairs, odd last expression, weights,
key frames, sizes; and the streaming vote over mask sets (CLI contract, errors, memory)."""

from __future__ import annotations

import re
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core.errors import InputFileError, UserError
from pipeline.core.io import encode_mask_png, read_json, read_mask_png
from pipeline.core.masks import MaskSet, Track
from pipeline.core.vote import VoteError, VoteSpec, vote_mask_sets, vote_video

FRAMES = ("00000", "00005")


def _track(*rows: list[int], scores=None, probs=None) -> Track:
    """Frames of a 1-row image from lists of 0/1 (one list per frame)."""
    masks = np.array(rows, bool)[:, None, :]
    p = None if probs is None else np.array(probs, np.float32)[:, None, :]
    return Track(FRAMES[: len(rows)], masks, scores, p)


def _masks(track: Track) -> list[list[int]]:
    return track.masks[:, 0, :].astype(int).tolist()


def test_default_threshold_is_half_with_ties_to_foreground() -> None:
    a, b, c = _track([0, 0, 0, 1]), _track([0, 0, 1, 1]), _track([0, 1, 1, 1])
    spec = VoteSpec(("a", "b", "c"))
    out, keys = vote_video([{"0": a}, {"0": b}, {"0": c}], ["0"], spec)
    assert _masks(out["0"]) == [[0, 0, 1, 1]] and keys == {}  # votes 0,1,2,3: >= 1.5 of 3
    d = _track([1, 0, 0, 0])
    out, _ = vote_video([{"0": t} for t in (a, b, c, d)], ["0"], VoteSpec(tuple("abcd")))
    assert _masks(out["0"]) == [[0, 0, 1, 1]]  # votes 1,1,2,3 of 4: the tie (2) is foreground


def test_tie_counts_explicitly() -> None:
    srcs = [_track([1, 1, 0]), _track([1, 0, 0]), _track([0, 1, 0]), _track([0, 0, 1])]
    # votes per pixel: 2, 2, 1 of 4
    out, _ = vote_video([{"0": t} for t in srcs], ["0"], VoteSpec(tuple("abcd")))
    assert _masks(out["0"]) == [[1, 1, 0]]
    out, _ = vote_video([{"0": t} for t in srcs], ["0"], VoteSpec(tuple("abcd"), min_votes=3))
    assert _masks(out["0"]) == [[0, 0, 0]]
    out, _ = vote_video([{"0": t} for t in srcs], ["0"], VoteSpec(tuple("abcd"), min_votes=1))
    assert _masks(out["0"]) == [[1, 1, 1]]


def test_pairs_pool_both_expressions_and_write_one_mask() -> None:
    # 3 sources x 2 expressions = 6 votes, threshold 3 (the challenge's V1 rule)
    e0 = [_track([1, 1, 0, 0]), _track([1, 0, 0, 0]), _track([0, 0, 0, 1])]
    e1 = [_track([1, 0, 1, 0]), _track([0, 1, 1, 0]), _track([0, 0, 0, 1])]
    # votes: pixel0 = 2+1 = 3, pixel1 = 1+1 = 2, pixel2 = 0+2 = 2, pixel3 = 1+1 = 2
    spec = VoteSpec(("a", "b", "c"), pairs=True, min_votes=3)
    out, _ = vote_video([{"0": x, "1": y} for x, y in zip(e0, e1, strict=True)], ["0", "1"], spec)
    assert _masks(out["0"]) == _masks(out["1"]) == [[1, 0, 0, 0]]
    # without pairs each expression is voted alone, >= 2 of 3
    out, _ = vote_video(
        [{"0": x, "1": y} for x, y in zip(e0, e1, strict=True)],
        ["0", "1"],
        VoteSpec(("a", "b", "c")),
    )
    assert _masks(out["0"]) == [[1, 0, 0, 0]] and _masks(out["1"]) == [[0, 0, 1, 0]]
    # default threshold under pairs: half of 6 = 3
    out, _ = vote_video(
        [{"0": x, "1": y} for x, y in zip(e0, e1, strict=True)],
        ["0", "1"],
        VoteSpec(("a", "b", "c"), pairs=True),
    )
    assert _masks(out["0"]) == [[1, 0, 0, 0]]


def test_pairs_follow_the_given_expression_order() -> None:
    on, off = _track([1]), _track([0])
    tracks = [{"0": on, "1": off, "2": on, "3": off}] * 2
    spec = VoteSpec(("a", "b"), pairs=True, min_votes=4)
    out, _ = vote_video(tracks, ["0", "2", "1", "3"], spec)  # pairs (0, 2) and (1, 3)
    assert [_masks(out[e]) for e in "0123"] == [[[1]], [[0]], [[1]], [[0]]]
    out, _ = vote_video(tracks, ["0", "1", "2", "3"], spec)  # pairs (0, 1) and (2, 3)
    assert [_masks(out[e]) for e in "0123"] == [[[0]], [[0]], [[0]], [[0]]]


def _odd_sources():
    # expressions 0,1 (a pair) and 2 (the odd last one); 4 sources
    last = [_track([1, 1, 1, 0]), _track([1, 1, 0, 0]), _track([1, 0, 1, 0]), _track([0, 1, 0, 1])]
    # votes on expression 2: pixel0 = 3, pixel1 = 3, pixel2 = 2, pixel3 = 1
    pair = _track([0, 0, 0, 0])
    return [{"0": pair, "1": pair, "2": t} for t in last], last


def test_odd_last_expression_own_threshold_is_a_strict_majority() -> None:
    tracks, _ = _odd_sources()
    spec = VoteSpec(tuple("abcd"), pairs=True, min_votes=4)
    out, _ = vote_video(tracks, ["0", "1", "2"], spec)
    assert _masks(out["2"]) == [[1, 1, 0, 0]]  # 3 of 4; the tie (2 of 4) is background
    spec = VoteSpec(tuple("abcd"), pairs=True, min_votes=4, odd_min_votes=2)
    out, _ = vote_video(tracks, ["0", "1", "2"], spec)
    assert _masks(out["2"]) == [[1, 1, 1, 0]]


def test_odd_last_expression_first_source_and_sigmoid_twice() -> None:
    tracks, last = _odd_sources()
    spec = VoteSpec(tuple("abcd"), pairs=True, odd_policy="first_source")
    out, _ = vote_video(tracks, ["0", "1", "2"], spec)
    assert _masks(out["2"]) == _masks(last[0]) == [[1, 1, 1, 0]]
    probs = [[0.9, 0.2, 0.0, 0.001]]
    tracks[0]["2"] = _track([1, 0, 0, 0], probs=probs)
    compat = VoteSpec(tuple("abcd"), pairs=True, odd_policy="first_source", sigmoid_twice=True)
    out, _ = vote_video(tracks, ["0", "1", "2"], compat)
    assert _masks(out["2"]) == [[1, 1, 0, 1]]  # sigmoid(p) > 0.5 for every p > 0
    tracks[0]["2"] = _track([1, 0, 0, 0])
    with pytest.raises(VoteError, match="soft probabilities"):
        vote_video(tracks, ["0", "1", "2"], compat)
    with pytest.raises(UserError, match="first_source"):
        VoteSpec(("a",), sigmoid_twice=True)


def test_single_expression_video_under_pairs_is_odd() -> None:
    srcs = [{"0": _track([1, 1])}, {"0": _track([1, 0])}, {"0": _track([0, 0])}]
    out, _ = vote_video(srcs, ["0"], VoteSpec(("a", "b", "c"), pairs=True))
    assert _masks(out["0"]) == [[1, 0]]  # 2 of 3 is a strict majority


def test_weights() -> None:
    a, b, c = _track([1, 0, 0, 1]), _track([0, 1, 0, 1]), _track([0, 1, 1, 0])
    tracks = [{"0": a}, {"0": b}, {"0": c}]
    # weights 2,1,1: total 4, threshold 2: a alone, b+c, a+b pass; c alone does not
    out, _ = vote_video(tracks, ["0"], VoteSpec(("a", "b", "c"), weights=(2, 1, 1)))
    assert _masks(out["0"]) == [[1, 1, 0, 1]]
    # fractional weights take the float path: 0.5, 0.3, 0.2, threshold 0.5
    out, _ = vote_video(tracks, ["0"], VoteSpec(("a", "b", "c"), weights=(0.5, 0.3, 0.2)))
    assert _masks(out["0"]) == [[1, 1, 0, 1]]
    out, _ = vote_video(tracks, ["0"], VoteSpec(("a", "b", "c"), weights=(0.3, 0.3, 0.4)))
    assert _masks(out["0"]) == [[0, 1, 0, 1]]  # 0.3+0.3 = 0.6 and 0.3+0.4 = 0.7 >= 0.5
    with pytest.raises(UserError, match="weights"):
        VoteSpec(("a", "b"), weights=(1,))
    with pytest.raises(UserError, match="positive"):
        VoteSpec(("a", "b"), weights=(1, 0))


def test_key_frames_from_the_named_source_per_expression() -> None:
    e = {
        "0": Track(("a", "b", "c"), np.zeros((3, 1, 2), bool), [0.1, 0.7, 0.7]),
        "1": Track(("a", "b", "c"), np.zeros((3, 1, 2), bool), [0.9, 0.2, 0.3]),
    }
    f = {k: Track(t.frame_ids, t.masks, [0, 0, 1]) for k, t in e.items()}
    spec = VoteSpec(("x", "y"), pairs=True, key_frame_source="y")
    _, keys = vote_video([e, f], ["0", "1"], spec)
    assert keys == {"0": 2, "1": 2}
    spec = VoteSpec(("x", "y"), pairs=True, key_frame_source="x")
    out, keys = vote_video([e, f], ["0", "1"], spec)
    assert keys == {"0": 1, "1": 0}  # argmax per expression; the first maximum wins
    np.testing.assert_array_equal(out["1"].scores, e["1"].scores)
    # a source without scores falls back to its recorded key frames, else it is an error
    bare = {k: Track(t.frame_ids, t.masks) for k, t in e.items()}
    spec = VoteSpec(("x", "y"), key_frame_source="x")
    _, keys = vote_video([bare, f], ["0", "1"], spec, recorded_key_frames=[{"0": 2, "1": 1}, {}])
    assert keys == {"0": 2, "1": 1}
    with pytest.raises(VoteError, match="no per-frame scores"):
        vote_video([bare, f], ["0", "1"], spec, video="v1")
    with pytest.raises(UserError, match="not among"):
        VoteSpec(("x", "y"), key_frame_source="z")


def test_sizes_frames_and_missing_expressions_are_named() -> None:
    big = Track(FRAMES, np.ones((2, 4, 6), bool))
    small = Track(FRAMES, np.zeros((2, 2, 3), bool))
    with pytest.raises(
        VoteError, match=r"video v7 expression 0: source 'b' is 2x3, source 'a' is 4x6"
    ):
        vote_video([{"0": big}, {"0": small}], ["0"], VoteSpec(("a", "b")), video="v7")
    out, _ = vote_video(
        [{"0": big}, {"0": small}], ["0"], VoteSpec(("a", "b"), resize=True, min_votes=2)
    )
    assert out["0"].size == (4, 6) and not out["0"].masks.any()
    other = Track(("00000", "00010"), np.ones((2, 4, 6), bool))
    with pytest.raises(VoteError, match="frames that differ"):
        vote_video([{"0": big}, {"0": other}], ["0"], VoteSpec(("a", "b")), video="v7")
    with pytest.raises(VoteError, match="source 'b' has no expression 1"):
        vote_video([{"0": big, "1": big}, {"0": big}], ["0", "1"], VoteSpec(("a", "b")), video="v7")


# ---------------------------------------------------------------------------------------------
# streaming over folders, zips and mask sets


def _write_png_source(
    root: Path, masks: dict[str, dict[str, np.ndarray]], annotations: bool = True
):
    base = root / "Annotations" if annotations else root
    for video, exps in masks.items():
        for exp, stack in exps.items():
            (base / video / exp).mkdir(parents=True, exist_ok=True)
            for k, m in enumerate(stack):
                (base / video / exp / f"{5 * k:05d}.png").write_bytes(encode_mask_png(m))
    return root


def _random_sources(tmp_path: Path, n_sources: int, videos: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(n_sources):
        per = {}
        for v in range(videos):
            n_exp = 3 if v % 2 else 2
            per[f"vid{v:02d}"] = {str(e): rng.random((4, 12, 16)) < 0.5 for e in range(n_exp)}
        data.append(per)
    paths = [_write_png_source(tmp_path / f"src{s}", d) for s, d in enumerate(data)]
    return paths, data


def test_cli_vote_contract_and_key_frame_json(tmp_path: Path) -> None:
    paths, data = _random_sources(tmp_path, 3, 3)
    # source 1 goes in as a zip (MeViS layout: no Annotations level) with scores in a mask set
    zpath = tmp_path / "src1.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted((paths[1] / "Annotations").rglob("*.png")):
            zf.write(p, p.relative_to(paths[1] / "Annotations").as_posix())
    scored = MaskSet(tmp_path / "scored")
    for video, exps in data[2].items():
        for exp, stack in exps.items():
            scored.write(video, exp, Track((*FRAMES, "00010", "00015"), stack, [0, 3, 1, 3]))
        scored.mark_complete(video)
    out = tmp_path / "fused"
    argv = ["vote", "--out", str(out), "--pairs", "--min-votes", "3", "--keyframe-from", "scored"]
    assert main([*argv, str(paths[0]), str(zpath), str(tmp_path / "scored")]) == 0
    for video in data[0]:
        n = len(data[0][video])
        votes = {e: sum(d[video][e].astype(int) for d in data) for e in data[0][video]}
        for i in range(0, n - 1, 2):
            pooled = votes[str(i)] + votes[str(i + 1)] >= 3
            for e in (str(i), str(i + 1)):
                got = np.stack(
                    [
                        read_mask_png(out / "Annotations" / video / e / f"{5 * k:05d}.png")
                        for k in range(4)
                    ]
                )
                np.testing.assert_array_equal(got, pooled)
        if n % 2:
            got = MaskSet(out).read(video, str(n - 1)).masks
            np.testing.assert_array_equal(got, votes[str(n - 1)] >= 2)  # strict majority of 3
    key_json = read_json(out / "key_frame.json")
    assert key_json["vid00"]["0"] == {"index_info": {"class_index": 1}}
    assert MaskSet(out).key_frames("vid01") == {"0": 1, "1": 1, "2": 1}


def test_parallel_equals_serial_and_resume(tmp_path: Path) -> None:
    paths, _ = _random_sources(tmp_path, 3, 4, seed=1)
    a = vote_mask_sets(paths, tmp_path / "a", VoteSpec(("s0", "s1", "s2"), pairs=True), workers=1)
    b = vote_mask_sets(paths, tmp_path / "b", VoteSpec(("s0", "s1", "s2"), pairs=True), workers=2)
    assert a.videos == b.videos == 4 and a.expressions == 10
    for p in sorted((tmp_path / "a" / "Annotations").rglob("*.png")):
        q = tmp_path / "b" / p.relative_to(tmp_path / "a")
        assert p.read_bytes() == q.read_bytes()
    again = vote_mask_sets(paths, tmp_path / "a", VoteSpec(("s0", "s1", "s2"), pairs=True))
    assert again.videos == 0 and again.skipped == 4


def test_corrupt_source_png_names_file_and_leaves_nothing(tmp_path: Path) -> None:
    paths, _ = _random_sources(tmp_path, 2, 2)
    bad = paths[1] / "Annotations" / "vid01" / "1" / "00005.png"
    bad.write_bytes(bad.read_bytes()[:40])
    out = tmp_path / "out"
    with pytest.raises(InputFileError, match=re.escape(str(bad))):
        vote_mask_sets(paths, out, VoteSpec(("s0", "s1")))
    ms = MaskSet(out)
    assert ms.videos() == ["vid00"]  # the failed video is not visible ...
    assert not (out / "Annotations" / "vid01").exists()  # ... and left no files
    assert not (out / "tracks" / "vid01").exists()
    assert main(["vote", "--out", str(tmp_path / "cli"), str(paths[0]), str(paths[1])]) == 2
    with pytest.raises(InputFileError, match=re.escape(str(bad))):  # from a worker process too
        vote_mask_sets(paths, tmp_path / "par", VoteSpec(("s0", "s1")), workers=2)
    assert MaskSet(tmp_path / "par").videos() == ["vid00"]


def test_memory_stays_flat_as_videos_grow(tmp_path: Path) -> None:
    def peak(videos: int) -> int:
        paths, _ = _random_sources(tmp_path / f"n{videos}", 3, videos, seed=videos)
        spec = VoteSpec(("a", "b", "c"), pairs=True)
        # a first, untraced run: one-off interpreter growth (pathlib interns every path part,
        # and the interned-string table resizes now and then) must not count as ours
        vote_mask_sets(paths, tmp_path / f"warm{videos}", spec)
        tracemalloc.start()
        vote_mask_sets(paths, tmp_path / f"out{videos}", spec)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(2), peak(16)
    assert large < 1.5 * small + 200_000, (small, large)
