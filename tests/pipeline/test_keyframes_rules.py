"""Key-frame rules of the vote node (``key_frame_rule``): the key source's scores, the fused
probability over the fused mask, and the sources' agreement (mean pairwise IoU), each against
a plain-numpy re-derivation; errors; the node records them for propagation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import UserError
from pipeline.core.keyframe_rules import PairwiseAgreement, mean_probability
from pipeline.core.masks import MaskSet, Track
from pipeline.core.vote import VoteSpec, vote_video
from pipeline.orchestration.config import compose_config
from pipeline.orchestration.nodes.propagate import key_frames_of
from pipeline.orchestration.nodes.run import run_node_video
from pipeline.orchestration.prepare import prepare_run
from pipeline.orchestration.recipe import Recipe
from tests.pipeline.flow_fixtures import demo_with_imports

FRAMES = ("00000", "00005", "00010", "00015")


def agreement_reference(masks: list[np.ndarray]) -> np.ndarray:
    """Per frame, the mean over every pair of masks of |A & B| / |A | B| (0 for two empties)."""
    values = []
    for t in range(masks[0].shape[0]):
        ious = []
        for a, b in itertools.combinations([m[t] for m in masks], 2):
            union = np.logical_or(a, b).sum()
            ious.append(np.logical_and(a, b).sum() / union if union else 0.0)
        values.append(np.mean(ious))
    return np.array(values)


def mean_probability_reference(mean: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """Per frame, the mean of ``mean`` over the pixels of ``fused`` (0 where it is empty)."""
    return np.array([m[f].mean() if f.any() else 0.0 for m, f in zip(mean, fused, strict=True)])


def _random_tracks(rng: np.random.Generator, n_sources: int, exps: list[str], probs: bool):
    """Tracks whose frames differ in how much the sources agree; frame 2 is empty for all."""
    sources = []
    for _ in range(n_sources):
        tracks = {}
        for e in exps:
            p = rng.random((4, 6, 8)) * rng.random((4, 1, 1))
            p[2] = 0
            p = (np.round(p * 1024) / 1024).astype(np.float16)
            tracks[e] = Track(FRAMES, p > 0.3, rng.random(4), p if probs else None)
        sources.append(tracks)
    return sources


# ---------------------------------------------------------------------------------------------
# the rules' arithmetic


def test_pairwise_agreement_is_the_mean_pairwise_iou() -> None:
    rng = np.random.default_rng(0)
    masks = [rng.random((5, 9, 13)) < rng.random((5, 1, 1)) for _ in range(4)]
    masks[1][3] = masks[0][3]  # some frames agree exactly ...
    for m in masks:
        m[4] = False  # ... and on one every mask is empty
    agreement = PairwiseAgreement()
    for m in masks:
        agreement.add(m)
    got = agreement.per_frame()
    np.testing.assert_allclose(got, agreement_reference(masks), rtol=1e-6)
    assert got[4] == 0 and got.dtype == np.float32
    identical = PairwiseAgreement()
    identical.add(masks[0][:2])
    identical.add(masks[0][:2])
    np.testing.assert_array_equal(identical.per_frame(), [1, 1])
    lone = PairwiseAgreement()
    lone.add(masks[0])
    with pytest.raises(ValueError, match="at least two"):
        lone.per_frame()
    with pytest.raises(ValueError, match="differ in shape"):
        lone.add(masks[0][:, :4])


def test_mean_probability_over_the_fused_mask() -> None:
    rng = np.random.default_rng(1)
    weighted_sum = rng.random((4, 5, 7)).astype(np.float32) * 3
    fused = rng.random((4, 5, 7)) < 0.4
    fused[1] = False
    got = mean_probability(weighted_sum, 3.0, fused)
    expected = mean_probability_reference(weighted_sum.astype(np.float64) / 3, fused)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[1] == 0
    with pytest.raises(ValueError, match="differ"):
        mean_probability(weighted_sum, 3.0, fused[:2])


def _one_row(masks: list[list[int]], probs=None, scores=None) -> Track:
    """A track of a 1-row image, one list per frame."""
    p = None if probs is None else np.array(probs, np.float32)[:, None, :]
    return Track(FRAMES[: len(masks)], np.array(masks, bool)[:, None, :], scores, p)


def test_the_three_rules_choose_different_frames() -> None:
    """Frame 0 has the best score, frame 1 the surest fused mask, frame 2 the most agreement."""
    a_masks = [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]
    a_probs = [[0.6, 0.6, 0, 0], [1, 0, 0, 0], [0.7, 0.7, 0.7, 0]]
    a = _one_row(a_masks, a_probs, scores=[0.9, 0.1, 0.2])
    b_masks = [[1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]
    b = _one_row(b_masks, np.where(np.array(b_masks, bool), 0.6, 0.0))
    c = _one_row([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0]])  # no probabilities: 0 / 1
    tracks = [{"0": t} for t in (a, b, c)]
    # fused (>= 2 of 3): [1,1,0,0], [1,0,0,0], [1,1,1,0]
    # mean probability over it: (2.2/3 + 1.6/3) / 2 = 0.633; 2.6/3 = 0.867; 5.9/9 = 0.656
    # agreement (pairs ab, ac, bc): 1/2, 2/3, 1/3; 1, 1/2, 1/2; 1, 2/3, 2/3
    keys = {}
    for rule, source in (("score", "a"), ("mean_probability", None), ("agreement", None)):
        spec = VoteSpec(("a", "b", "c"), key_frame_source=source, key_frame_rule=rule)
        out, keys[rule] = vote_video(tracks, ["0"], spec)
        assert _row(out["0"]) == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]
        if rule == "mean_probability":
            np.testing.assert_allclose(out["0"].scores, [3.8 / 6, 2.6 / 3, 5.9 / 9], rtol=1e-6)
        if rule == "agreement":
            np.testing.assert_allclose(out["0"].scores, [1 / 2, 2 / 3, 7 / 9], rtol=1e-6)
    assert keys == {"score": {"0": 0}, "mean_probability": {"0": 1}, "agreement": {"0": 2}}


def _row(track: Track) -> list[list[int]]:
    return track.masks[:, 0, :].astype(int).tolist()


# ---------------------------------------------------------------------------------------------
# in the vote, against the re-derivation


@pytest.mark.parametrize("mode", ["hard", "soft"])
@pytest.mark.parametrize("odd", ["first_source", "own_threshold"])
def test_agreement_rule_per_group(mode: str, odd: str) -> None:
    rng = np.random.default_rng(2)
    order = ["0", "1", "2"]
    sources = _random_tracks(rng, 3, order, probs=mode == "soft")
    spec = VoteSpec(
        ("a", "b", "c"), pairs=True, odd_policy=odd, mode=mode, key_frame_rule="agreement"
    )
    out, keys = vote_video(sources, order, spec)
    pair = agreement_reference([s[e].masks for e in ("0", "1") for s in sources])
    last = agreement_reference([s["2"].masks for s in sources])  # every source, also under
    for e, values in (("0", pair), ("1", pair), ("2", last)):  # first_source
        np.testing.assert_allclose(out[e].scores, values, rtol=1e-6)
        assert keys[e] == int(np.argmax(values))
    assert np.ptp(pair) > 0.05 and np.ptp(last) > 0.05  # frames the rule can tell apart


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_mean_probability_rule_per_group(mode: str) -> None:
    rng = np.random.default_rng(3)
    order = ["0", "1", "2"]
    sources = _random_tracks(rng, 3, order, probs=True)
    sources[2] = {e: Track(t.frame_ids, t.masks, t.scores) for e, t in sources[2].items()}
    weights = (2.0, 1.0, 1.0)
    spec = VoteSpec(
        ("a", "b", "c"), weights=weights, pairs=True, mode=mode, key_frame_rule="mean_probability"
    )
    out, keys = vote_video(sources, order, spec)

    def prob(s: int, e: str) -> np.ndarray:  # a source without probabilities votes its mask
        t = sources[s][e]
        return (t.probs if t.probs is not None else t.masks).astype(np.float64)

    for group in (("0", "1"), ("2",)):
        mean = sum(weights[s] * prob(s, e) for s in range(3) for e in group)
        mean = mean / (sum(weights) * len(group))
        values = mean_probability_reference(mean, out[group[0]].masks)
        for e in group:
            np.testing.assert_allclose(out[e].scores, values, rtol=1e-5)
            assert keys[e] == int(np.argmax(values))
        assert values[2] == 0  # the empty frame
    assert out["2"].probs is None


def test_score_rule_is_the_default_and_unchanged() -> None:
    rng = np.random.default_rng(4)
    sources = _random_tracks(rng, 2, ["0", "1"], probs=False)
    out, keys = vote_video(sources, ["0", "1"], VoteSpec(("a", "b"), key_frame_source="b"))
    assert keys == {e: int(np.argmax(sources[1][e].scores)) for e in ("0", "1")}
    np.testing.assert_array_equal(out["1"].scores, sources[1]["1"].scores)
    _, none = vote_video(sources, ["0", "1"], VoteSpec(("a", "b")))
    assert none == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key_frame_rule": "best"}, r"key_frame_rule must be one of \('score', "),
        ({"key_frame_rule": "agreement", "key_frame_source": "a"}, r"'a' is for the 'score'"),
        ({"key_frame_rule": "mean_probability", "key_frame_source": "b"}, r"reads every voter"),
    ],
)
def test_bad_rules_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        VoteSpec(("a", "b"), **kwargs)


def test_agreement_needs_two_sources() -> None:
    with pytest.raises(UserError, match="at least two sources"):
        VoteSpec(("a",), pairs=True, key_frame_rule="agreement")


# ---------------------------------------------------------------------------------------------
# the node


def _rule(tmp_path: Path, rule: str) -> list[str]:
    return [
        *demo_with_imports(tmp_path, videos=1),
        f"++recipe.nodes.v1.key_frame_rule={rule}",
        "recipe.nodes.v1.keyframe_from=null",
    ]


def test_config_errors_name_the_node(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"recipe\.nodes\.v1\.key_frame_rule"):
        compose_config(_rule(tmp_path, "best"))
    kept_source = [
        *demo_with_imports(tmp_path, videos=1),
        "++recipe.nodes.v1.key_frame_rule=agreement",
    ]
    with pytest.raises(UserError, match=r"recipe\.nodes\.v1: key frame source 'soc' is for"):
        Recipe.from_config(compose_config(kept_source))


def test_agreement_key_frames_are_recorded_for_propagation(tmp_path: Path) -> None:
    plan = prepare_run(compose_config(_rule(tmp_path, "agreement")), nodes=["v1"])
    assert not any(j.keep_probs for j in plan.jobs)  # agreement reads masks only
    video = plan.videos[0]
    for job in plan.jobs:
        run_node_video(job, video)
    sources = [MaskSet(plan.job(n).out_dir) for n in ("soc", "mutr", "referformer", "sgmg")]
    order = sources[0].expressions(video)
    expected = {}
    for i in range(0, len(order), 2):
        group = order[i : i + 2]
        values = agreement_reference([s.read(video, e).masks for e in group for s in sources])
        expected.update({e: int(np.argmax(values)) for e in group})
    vote = MaskSet(plan.job("v1").out_dir)
    assert vote.key_frames(video) == expected
    assert key_frames_of(vote, video, order, "v1") == expected  # what stage1 starts from


def test_mean_probability_rule_makes_producers_keep_probabilities(tmp_path: Path) -> None:
    plan = prepare_run(compose_config(_rule(tmp_path, "mean_probability")), nodes=["v1"])
    assert {j.name for j in plan.jobs if j.keep_probs} == {"soc", "mutr", "referformer", "sgmg"}
