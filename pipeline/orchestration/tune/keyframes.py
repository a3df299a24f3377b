"""The key frames a chosen vote hands to a downstream propagation.

A vote's key-frame choice never changes its masks, only the frame a propagation would start
from. Without propagating (not in this search), the choice is judged by what the propagation
would be given: the J&F of the fused mask on each expression's key frame against the ground
truth on that frame, averaged over expressions. Options: ``keyframe_from`` each source whose
tracks all carry per-frame scores (the ``score`` rule), the ``agreement`` rule (two sources or
more), and the ``mean_probability`` rule where a soft vote of the sources is in the space (the
rule reads probabilities, see :func:`pipeline.orchestration.tune.search.default_space`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.core.scoring import j_and_f
from pipeline.core.vote import VoteSpec, vote_video
from pipeline.orchestration.tune.evaluate import Evaluator
from pipeline.orchestration.tune.space import SearchSpace


@dataclass(frozen=True)
class KeyFrameOption:
    """A key-frame choice of a vote and the mean J&F of the fused mask on its key frames."""

    spec: VoteSpec
    key_frame_jf: float

    def describe(self) -> str:
        if self.spec.key_frame_rule == "score":
            return f"keyframe_from {self.spec.key_frame_source} (score rule)"
        return f"{self.spec.key_frame_rule} rule"


def key_frame_specs(evaluator: Evaluator, spec: VoteSpec, space: SearchSpace) -> list[VoteSpec]:
    """``spec`` with each key-frame choice the run's cached tracks allow."""
    plain = replace(spec, key_frame_source=None, key_frame_rule="score")
    out = [
        replace(plain, key_frame_source=source)
        for source in spec.sources
        if _has_scores(evaluator, source)
    ]
    if len(spec.sources) >= 2:
        out.append(replace(plain, key_frame_rule="agreement"))
    if space.soft_votable(spec.sources):
        out.append(replace(plain, key_frame_rule="mean_probability"))
    return out


def rank_key_frames(
    evaluator: Evaluator, spec: VoteSpec, space: SearchSpace, videos: Sequence[str]
) -> list[KeyFrameOption]:
    """Every key-frame option of ``spec``, best first (ties: the first listed)."""
    options = [
        KeyFrameOption(s, _mean_key_frame_jf(evaluator, s, videos))
        for s in key_frame_specs(evaluator, spec, space)
    ]
    return sorted(options, key=lambda o: -o.key_frame_jf)


def _has_scores(evaluator: Evaluator, source: str) -> bool:
    return all(
        track.scores is not None
        for video in evaluator.run.videos
        for track in evaluator.tracks(source, video).values()
    )


def _mean_key_frame_jf(evaluator: Evaluator, spec: VoteSpec, videos: Sequence[str]) -> float:
    """Mean over the expressions of ``videos`` of the fused mask's J&F on its key frame."""
    values: list[float] = []
    for video in videos:
        order = evaluator.order(video)
        sources = [evaluator.tracks(s, video) for s in spec.sources]
        fused, keys = vote_video(sources, order, spec, video=video)
        truth = evaluator.truth(video)
        listed = {fid: i for i, fid in enumerate(evaluator.dataset.video(video).frame_ids)}
        for exp in order:
            k = keys[exp]
            t = listed[fused[exp].frame_ids[k]]  # the key frame among the annotated frames
            j, f = j_and_f(fused[exp].masks[k : k + 1], truth[exp][t : t + 1])
            values.append(float((j[0] + f[0]) / 2))
    return float(np.mean(values))
