"""Soft voting: the weighted mean of the sources' foreground probabilities against
``prob_threshold``, re-derived here in plain numpy; binary sources vote 0 / 1; errors, the
node's config, cache keys and streaming memory."""

from __future__ import annotations

import itertools
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline.core import vote as core_vote
from pipeline.core.errors import UserError
from pipeline.core.keyframe_rules import KEY_FRAME_RULES
from pipeline.core.masks import MaskSet, Track
from pipeline.core.vote import VoteError, VoteSpec, vote_mask_sets, vote_video
from pipeline.orchestration.config import KeyFrameRule, VoteMode, compose_config
from pipeline.orchestration.nodes.run import run_node_video
from pipeline.orchestration.prepare import prepare_run
from pipeline.orchestration.recipe import Recipe
from tests.pipeline.flow_fixtures import demo_with_imports, plan_keys


def _track(*probs: list[float], frames: tuple[str, ...] | None = None) -> Track:
    """A track of a 1-row image whose probabilities are the given rows (one per frame); its
    masks are the probabilities > 0.5, as a producer writes them."""
    p = np.array(probs, np.float32)[:, None, :]
    ids = frames or tuple(f"{5 * k:05d}" for k in range(len(probs)))
    return Track(ids, p > 0.5, None, p)


def _binary(*rows: list[int]) -> Track:
    masks = np.array(rows, bool)[:, None, :]
    return Track(tuple(f"{5 * k:05d}" for k in range(len(rows))), masks)


def _row(track: Track) -> list[list[int]]:
    return track.masks[:, 0, :].astype(int).tolist()


def soft_vote_reference(
    probs: list[dict[str, np.ndarray]],
    order: list[str],
    weights: list[float],
    threshold: float,
    pairs: bool,
    odd_policy: str,
) -> dict[str, np.ndarray]:
    """The soft vote written out independently: per group, stack every (source, expression)
    probability map with its weight, take the weighted mean in float64, compare ``>=``."""
    w = np.asarray(weights, np.float64)
    if pairs:
        groups = [order[i : i + 2] for i in range(0, len(order) - 1, 2)]
        groups += [order[-1:]] if len(order) % 2 else []
    else:
        groups = [[e] for e in order]
    fused = {}
    for group in groups:
        if pairs and len(group) == 1 and odd_policy == "first_source":
            mean = probs[0][group[0]].astype(np.float64)
        else:
            stack = np.stack([probs[s][e].astype(np.float64) for e in group for s in range(len(w))])
            each = np.array([w[s] for _ in group for s in range(len(w))])
            mean = np.tensordot(each, stack, axes=1) / each.sum()
        for e in group:
            fused[e] = mean >= threshold - 1e-6
    return fused


# ---------------------------------------------------------------------------------------------
# hand-worked cases


def test_mean_probability_against_the_threshold_with_ties_to_foreground() -> None:
    a = _track([0.9, 0.2, 0.5, 0.0])
    b = _track([0.1, 0.5, 0.5, 0.4])
    c = _track([0.6, 0.8, 0.5, 0.4])
    tracks = [{"0": t} for t in (a, b, c)]
    # means: 0.533, 0.5, 0.5, 0.267 (exact in float: 1.6/3, 1.5/3, 1.5/3, 0.8/3)
    out, keys = vote_video(tracks, ["0"], VoteSpec(("a", "b", "c"), mode="soft"))
    assert _row(out["0"]) == [[1, 1, 1, 0]] and keys == {}
    assert out["0"].probs is None  # kept only when asked
    out, _ = vote_video(tracks, ["0"], VoteSpec(("a", "b", "c"), mode="soft", prob_threshold=0.52))
    assert _row(out["0"]) == [[1, 0, 0, 0]]
    # the hard vote of the same sources counts their masks (p > 0.5): 2, 1, 0, 0 of 3
    out, _ = vote_video(tracks, ["0"], VoteSpec(("a", "b", "c")))
    assert _row(out["0"]) == [[1, 0, 0, 0]]


def test_weights_pairs_and_kept_probabilities() -> None:
    e0 = [_track([1.0, 0.0, 0.25]), _track([0.0, 0.5, 0.25])]
    e1 = [_track([0.0, 0.0, 0.75]), _track([0.5, 1.0, 0.25])]
    tracks = [{"0": x, "1": y} for x, y in zip(e0, e1, strict=True)]
    spec = VoteSpec(("a", "b"), weights=(3, 1), pairs=True, mode="soft")
    out, _ = vote_video(tracks, ["0", "1"], spec, keep_probs=True)
    # (3 * (1 + 0) + 1 * (0 + 0.5)) / 8 = 0.4375; (0 + 1.5) / 8; (3 * 1 + 0.5) / 8 = 0.4375
    expected = np.array([[[0.4375, 0.1875, 0.4375]]], np.float32)
    for e in ("0", "1"):
        np.testing.assert_array_equal(out[e].probs, expected)
        assert _row(out[e]) == [[0, 0, 0]]
    out, _ = vote_video(tracks, ["0", "1"], VoteSpec(("a", "b"), pairs=True, mode="soft"))
    # equal weights: (1 + 0 + 0 + 0.5) / 4 = 0.375, 1.5 / 4, 1.5 / 4
    assert _row(out["0"]) == _row(out["1"]) == [[0, 0, 0]]
    spec = VoteSpec(("a", "b"), pairs=True, mode="soft", prob_threshold=0.375)
    out, _ = vote_video(tracks, ["0", "1"], spec)
    assert _row(out["0"]) == [[1, 1, 1]]


def test_odd_last_expression_under_pairs() -> None:
    pair = _track([0.0, 0.0])
    last = [_track([0.4, 0.9]), _track([0.8, 0.2]), _track([0.9, 0.2])]
    tracks = [{"0": pair, "1": pair, "2": t} for t in last]
    own = VoteSpec(("a", "b", "c"), pairs=True, mode="soft")
    out, _ = vote_video(tracks, ["0", "1", "2"], own)
    assert _row(out["2"]) == [[1, 0]]  # means 0.7, 0.433: every source votes on it alone
    first = VoteSpec(("a", "b", "c"), pairs=True, mode="soft", odd_policy="first_source")
    out, _ = vote_video(tracks, ["0", "1", "2"], first)
    assert _row(out["2"]) == [[0, 1]]  # source 0's probability alone


def test_binary_sources_vote_their_masks_and_match_the_hard_vote() -> None:
    """A source without probabilities votes 0 / 1; with only such sources, the soft vote at
    0.5 is the hard vote at half of the votes (ties to foreground, both)."""
    a, b = _binary([1, 1, 0, 0]), _binary([1, 0, 1, 0])
    p = _track([0.5, 0.0, 0.0, 1.0])
    out, _ = vote_video([{"0": a}, {"0": b}, {"0": p}], ["0"], VoteSpec(tuple("abc"), mode="soft"))
    assert _row(out["0"]) == [[1, 0, 0, 0]]  # means 2.5/3, 1/3, 1/3, 1/3
    rng = np.random.default_rng(3)
    frames = ("a", "b", "c")
    binary = [
        {str(e): Track(frames, rng.random((3, 5, 6)) < 0.5) for e in range(4)} for _ in range(4)
    ]
    order = ["0", "1", "2", "3"]
    for pairs, odd in itertools.product((False, True), ("first_source", "own_threshold")):
        spec = dict(pairs=pairs, odd_policy=odd)
        hard, _ = vote_video(binary, order, VoteSpec(tuple("abcd"), **spec))
        soft, _ = vote_video(binary, order, VoteSpec(tuple("abcd"), mode="soft", **spec))
        for e in order:
            np.testing.assert_array_equal(soft[e].masks, hard[e].masks)


# ---------------------------------------------------------------------------------------------
# against the independent re-derivation


def _dyadic_sources(rng: np.random.Generator, n_sources: int, order: list[str], shape):
    """Probabilities on a 1/1024 grid (exact in float16 and in every sum taken here); every
    third source keeps only its mask, whose probability is its mask."""
    sources, probs = [], []
    for s in range(n_sources):
        tracks, maps = {}, {}
        for e in order:
            p = (rng.integers(0, 1025, shape) / 1024).astype(np.float16)
            if s % 3 == 2:
                mask = p > 0.5
                tracks[e], maps[e] = Track(tuple(map(str, range(shape[0]))), mask), mask
            else:
                tracks[e] = Track(tuple(map(str, range(shape[0]))), p > 0.5, None, p)
                maps[e] = p
        sources.append(tracks)
        probs.append(maps)
    return sources, probs


@pytest.mark.parametrize(
    ("n_exp", "pairs", "odd", "weights", "threshold"),
    [
        (3, False, "own_threshold", None, 0.5),
        (5, True, "own_threshold", None, 0.5),
        (5, True, "first_source", (1.25, 0.5, 2.0, 0.75), 0.4),
        (4, True, "own_threshold", (2, 1, 1, 3), 0.625),
        (1, True, "own_threshold", (0.25, 0.5, 0.75, 1.0), 0.75),
    ],
)
def test_soft_vote_equals_the_reference(n_exp, pairs, odd, weights, threshold) -> None:
    rng = np.random.default_rng(n_exp * 10 + int(pairs))
    order = [str(e) for e in range(n_exp)]
    sources, probs = _dyadic_sources(rng, 4, order, (3, 9, 11))
    spec = VoteSpec(
        tuple("abcd"),
        weights=weights,
        pairs=pairs,
        odd_policy=odd,
        mode="soft",
        prob_threshold=threshold,
    )
    out, _ = vote_video(sources, order[::-1], spec)  # pairs follow the given order
    expected = soft_vote_reference(
        probs, order[::-1], list(weights or (1,) * 4), threshold, pairs, odd
    )
    for e in order:
        np.testing.assert_array_equal(out[e].masks, expected[e], err_msg=f"expression {e}")
    assert any(m.any() and not m.all() for m in expected.values())  # a case that can fail


def test_arbitrary_probabilities_and_weights_agree_off_the_threshold() -> None:
    """Non-dyadic values: float32 sums may differ from float64 only within rounding of the
    threshold, never elsewhere."""
    rng = np.random.default_rng(11)
    order = ["0", "1"]
    sources = [
        {
            e: Track(("x", "y"), np.zeros((2, 40, 50), bool), None, rng.random((2, 40, 50)))
            for e in order
        }
        for _ in range(3)
    ]
    probs = [{e: t[e].probs for e in order} for t in sources]
    weights = [0.3, 0.7, 1.1]
    spec = VoteSpec(("a", "b", "c"), weights=weights, pairs=True, mode="soft", prob_threshold=0.55)
    out, _ = vote_video(sources, order, spec)
    expected = soft_vote_reference(probs, order, weights, 0.55, True, "own_threshold")
    stack = np.stack(
        [w * p[e].astype(np.float64) for e in order for w, p in zip(weights, probs, strict=True)]
    )
    near = np.abs(stack.sum(0) / (2 * sum(weights)) - 0.55) < 1e-5
    assert near.mean() < 1e-3
    np.testing.assert_array_equal(out["0"].masks[~near], expected["0"][~near])


def test_resized_sources_vote_their_resized_probabilities() -> None:
    big = Track(("a",), np.zeros((1, 4, 6), bool), None, np.full((1, 4, 6), 0.25, np.float32))
    small = Track(("a",), np.ones((1, 2, 3), bool), None, np.full((1, 2, 3), 0.875, np.float32))
    spec = VoteSpec(("a", "b"), mode="soft", resize=True, prob_threshold=0.55)
    out, _ = vote_video([{"0": big}, {"0": small}], ["0"], spec, keep_probs=True)
    assert out["0"].size == (4, 6) and out["0"].masks.all()  # (0.25 + 0.875) / 2 = 0.5625
    np.testing.assert_allclose(out["0"].probs, 0.5625)
    with pytest.raises(VoteError, match="source 'b' is 2x3, source 'a' is 4x6"):
        vote_video([{"0": big}, {"0": small}], ["0"], VoteSpec(("a", "b"), mode="soft"))


def test_missing_frames_and_expressions_are_named() -> None:
    a = _track([0.9], [0.1])
    other = _track([0.9], [0.1], frames=("00000", "00010"))
    spec = VoteSpec(("a", "b"), mode="soft")
    with pytest.raises(VoteError, match="video v3 expression 0: source 'b' has frames that differ"):
        vote_video([{"0": a}, {"0": other}], ["0"], spec, video="v3")
    with pytest.raises(VoteError, match="video v3: source 'b' has no expression 1"):
        vote_video([{"0": a, "1": a}, {"0": a}], ["0", "1"], spec, video="v3")


# ---------------------------------------------------------------------------------------------
# settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "soft", "prob_threshold": 0}, r"prob_threshold must be in \(0, 1\], got 0"),
        ({"mode": "soft", "prob_threshold": 1.5}, r"prob_threshold must be in \(0, 1\]"),
        ({"mode": "soft", "prob_threshold": float("nan")}, r"prob_threshold must be in"),
        ({"mode": "soft", "prob_threshold": "high"}, r"prob_threshold must be a number"),
        ({"mode": "soft", "prob_threshold": True}, r"prob_threshold must be a number"),
        ({"mode": "medium"}, r"mode must be one of \('hard', 'soft'\), got 'medium'"),
        ({"mode": "soft", "min_votes": 2}, r"min_votes counts hard votes"),
        ({"mode": "soft", "pairs": True, "odd_min_votes": 2}, r"odd_min_votes counts hard"),
        ({"prob_threshold": 0.7}, r"prob_threshold 0.7 applies to soft votes"),
        (
            {"mode": "soft", "odd_policy": "first_source", "sigmoid_twice": True},
            r"sigmoid_twice applies to hard votes",
        ),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        VoteSpec(("a", "b", "c"), **kwargs)


def test_schema_choices_are_the_core_vote_choices() -> None:
    assert tuple(str(m) for m in VoteMode) == core_vote.VOTE_MODES
    assert tuple(str(r) for r in KeyFrameRule) == KEY_FRAME_RULES


def _soft_v1(tmp_path: Path, *extra: str) -> list[str]:
    return [
        *demo_with_imports(tmp_path, videos=1),
        "++recipe.nodes.v1.mode=soft",
        "recipe.nodes.v1.min_votes=null",
        *extra,
    ]


def test_config_errors_name_the_node(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"recipe\.nodes\.v1\.mode"):
        compose_config([*demo_with_imports(tmp_path, videos=1), "++recipe.nodes.v1.mode=medium"])
    with pytest.raises(UserError, match=r"recipe\.nodes\.v1\.prob_threshold"):
        compose_config(_soft_v1(tmp_path, "++recipe.nodes.v1.prob_threshold=high"))
    bad = compose_config(_soft_v1(tmp_path, "++recipe.nodes.v1.prob_threshold=1.5"))
    with pytest.raises(UserError, match=r"recipe\.nodes\.v1: prob_threshold must be in \(0, 1\]"):
        Recipe.from_config(bad)
    counted = compose_config(
        [*demo_with_imports(tmp_path, videos=1), "++recipe.nodes.v1.mode=soft"]
    )
    with pytest.raises(UserError, match=r"recipe\.nodes\.v1: min_votes counts hard votes"):
        Recipe.from_config(counted)


def test_mode_and_threshold_are_in_the_key(tmp_path: Path) -> None:
    hard = plan_keys(compose_config(demo_with_imports(tmp_path, videos=1)))
    soft = plan_keys(compose_config(_soft_v1(tmp_path)))
    higher = plan_keys(compose_config(_soft_v1(tmp_path, "++recipe.nodes.v1.prob_threshold=0.6")))
    downstream = {"v1", "stage1", "v2", "stage2", "final"}
    assert {n for n in soft if soft[n] != higher[n]} == downstream
    # turning the vote soft also makes its producers keep their probabilities (a plan flag in
    # their keys); its stage-II input, a propagation, keeps only masks and is unchanged
    producers = {"soc", "mutr", "referformer", "sgmg"}
    assert {n for n in hard if hard[n] != soft[n]} == downstream | producers
    back = [*_soft_v1(tmp_path), "++recipe.nodes.v1.mode=hard", "recipe.nodes.v1.min_votes=4"]
    assert plan_keys(compose_config(back)) == hard


def test_which_nodes_keep_probabilities(tmp_path: Path) -> None:
    """Producers and soft votes read by a soft vote keep probabilities; propagations and hard
    votes have only masks, so the flag is not set on them (it would re-run them for nothing)."""
    base = demo_with_imports(tmp_path, videos=1)
    assert Recipe.from_config(compose_config(base)).soft_inputs() == set()
    soft = [
        *base,
        "++recipe.nodes.v2.mode=soft",
        "recipe.nodes.v2.min_votes=null",
        "recipe.nodes.v2.odd_min_votes=null",
        "++recipe.nodes.final.mode=soft",
        "recipe.nodes.final.min_votes=null",
        "recipe.nodes.final.odd_min_votes=null",
        "recipe.nodes.final.sources=[v2,stage1,uninext,v1]",
    ]
    assert Recipe.from_config(compose_config(soft)).soft_inputs() == {"uninext", "v2"}


# ---------------------------------------------------------------------------------------------
# the node, and streaming


def test_soft_vote_node_reads_kept_probabilities(tmp_path: Path) -> None:
    cfg = compose_config(_soft_v1(tmp_path, "++recipe.nodes.v1.prob_threshold=0.45"))
    plan = prepare_run(cfg, nodes=["v1"])
    assert {j.name for j in plan.jobs if j.keep_probs} == {"soc", "mutr", "referformer", "sgmg"}
    video = plan.videos[0]
    sources = ["soc", "mutr", "referformer", "sgmg"]
    for name in sources:
        run_node_video(plan.job(name), video)
    # SOC stands for a producer that kept its probabilities: rewrite its import with some
    soc = MaskSet(plan.job("soc").out_dir)
    rng = np.random.default_rng(5)
    order = soc.expressions(video)
    for exp in order:
        t = soc.read(video, exp)
        p = (rng.integers(0, 257, t.masks.shape) / 256).astype(np.float16)
        soc.write(video, exp, Track(t.frame_ids, p > 0.5, t.scores, p))
    soc.mark_complete(video, order)
    assert run_node_video(plan.job("v1"), video)["status"] == "computed"
    probs = []
    for name in sources:
        ms = MaskSet(plan.job(name).out_dir)
        probs.append(
            {
                e: ms.read(video, e).probs if name == "soc" else ms.read(video, e).masks
                for e in order
            }
        )
    assert probs[0][order[0]] is not None
    expected = soft_vote_reference(probs, order, [1, 1, 1, 1], 0.45, True, "first_source")
    fused = MaskSet(plan.job("v1").out_dir)
    for e in order:
        np.testing.assert_array_equal(fused.read(video, e).masks, expected[e])
    soc_scores = {e: soc.read(video, e).scores for e in order}  # keyframe_from: soc
    assert fused.key_frames(video) == {e: int(np.argmax(s)) for e, s in soc_scores.items()}


def _soft_sources(root: Path, videos: int, seed: int) -> list[MaskSet]:
    rng = np.random.default_rng(seed)
    out = []
    for s in range(3):
        ms = MaskSet(root / f"src{s}", "rle")
        for v in range(videos):
            for e in range(3 if v % 2 else 2):
                p = rng.random((4, 12, 16)).astype(np.float16)
                ms.write(f"vid{v:02d}", str(e), Track(("0", "1", "2", "3"), p > 0.5, None, p))
            ms.mark_complete(f"vid{v:02d}")
        out.append(ms)
    return out


def test_streaming_soft_vote_keeps_probabilities_and_memory_flat(tmp_path: Path) -> None:
    spec = VoteSpec(("a", "b", "c"), pairs=True, mode="soft")

    def peak(videos: int) -> int:
        sources = _soft_sources(tmp_path / f"n{videos}", videos, seed=videos)
        vote_mask_sets(sources, tmp_path / f"warm{videos}", spec, storage="rle")  # see test_vote
        tracemalloc.start()
        vote_mask_sets(sources, tmp_path / f"out{videos}", spec, storage="rle", keep_probs=True)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(2), peak(16)
    assert large < 1.5 * small + 200_000, (small, large)
    sources = _soft_sources(tmp_path / "n2", 2, seed=2)
    kept = MaskSet(tmp_path / "out2").read("vid01", "2")  # the odd last one, all three vote
    mean = sum(s.read("vid01", "2").probs.astype(np.float64) for s in sources) / 3
    np.testing.assert_array_equal(kept.masks, mean >= 0.5 - 1e-6)
    np.testing.assert_allclose(kept.probs, mean, atol=1e-3)  # stored as float16
    assert MaskSet(tmp_path / "warm2").read("vid01", "2").probs is None
