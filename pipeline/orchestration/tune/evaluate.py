"""Score vote candidates from a run's cached mask sets, in memory, exactly as a vote node would.

A candidate is a :class:`~pipeline.core.vote.VoteSpec` over the run's nodes. Its score on a
video is what a vote node with that spec followed by the node's score would give: the library's
:func:`~pipeline.core.vote.vote_video` over the sources' tracks, then
:func:`~pipeline.core.scoring.score_video` of the fused tracks against the ground truth, under
the protocol :mod:`pipeline.orchestration.score` uses. Each (source, video)'s tracks and each
video's ground truth are read once and kept; each (candidate, video)'s rows are computed once,
so every fold and search step that asks again gets them for free; and an expression whose fused
masks another candidate already produced (a digest of the masks matches) takes that score.

J&F over a set of videos is the run report's: the mean J and the mean F over the expressions of
those videos, in split then meta order (:func:`~pipeline.orchestration.report.write.
summarise_scores`), then ``(J + F) / 2``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.masks import MaskSet, Track
from pipeline.core.scoring import score_video
from pipeline.core.vote import VoteSpec, vote_video
from pipeline.orchestration.score import _PROTOCOL as NODE_PROTOCOLS
from pipeline.orchestration.splits import expression_ids, open_split
from pipeline.orchestration.tune.run_nodes import RunNodes

Rows = tuple[tuple[float, float], ...]  # (J, F) per expression of a video, meta order


@dataclass(frozen=True)
class Score:
    """J, F and J&F (fractions in [0, 1]) over ``expressions`` expressions."""

    J: float
    F: float
    expressions: int

    @property
    def JF(self) -> float:  # noqa: N802 - the metric's name
        return (self.J + self.F) / 2


def mean_score(rows: Iterable[tuple[float, float]]) -> Score:
    """The report's J&F of ``(J, F)`` rows: the mean J, the mean F (``np.mean``, row order)."""
    values = list(rows)
    if not values:
        raise ValueError("no rows to score")
    j = float(np.mean([v[0] for v in values]))
    f = float(np.mean([v[1] for v in values]))
    return Score(j, f, len(values))


def masks_only(spec: VoteSpec) -> VoteSpec:
    """``spec`` without its key-frame choice, which never changes the fused masks."""
    if spec.key_frame_source is None and spec.key_frame_rule == "score":
        return spec
    return replace(spec, key_frame_source=None, key_frame_rule="score")


class Evaluator:
    """Votes and scores candidates on the videos of a run (``run``: its complete nodes).

    Memory: every (source, video)'s tracks that a candidate reads stay in memory (bool masks
    ``T x H x W`` per expression, probabilities where the node kept them), as does each video's
    ground truth; at Ref-YouTube-VOS scale that is gigabytes per node.
    """

    def __init__(self, run: RunNodes) -> None:
        self.run = run
        self.dataset = open_split(run.dataset)
        self.protocol = NODE_PROTOCOLS[str(run.dataset.format)]
        self._tracks: dict[tuple[str, str], dict[str, Track]] = {}
        self._truth: dict[str, dict[str, np.ndarray]] = {}
        self._rows: dict[tuple[VoteSpec, str], Rows] = {}
        self._by_masks: dict[tuple[str, str, bytes], tuple[float, float]] = {}
        self.expressions_scored = 0  # fused (video, expression) masks scored
        self.expressions_reused = 0  # ... found scored already (the same masks)
        self.seconds_reading = 0.0
        self.seconds_voting = 0.0  # vote + score of every (candidate, video) computed

    # ------------------------------------------------------------------------ cached inputs

    def order(self, video: str) -> list[str]:
        """The video's expression ids in meta order."""
        return expression_ids(self.run.dataset, video)

    def tracks(self, source: str, video: str) -> dict[str, Track]:
        """Expression id -> track of node ``source`` on ``video``, read once."""
        key = (source, video)
        if key not in self._tracks:
            start = time.perf_counter()
            masks = MaskSet(self.run.nodes[source].out_dir)
            self._tracks[key] = {exp: masks.read(video, exp) for exp in self.order(video)}
            self.seconds_reading += time.perf_counter() - start
        return self._tracks[key]

    def truth(self, video: str) -> dict[str, np.ndarray]:
        """Expression id -> ``T x H x W bool`` ground truth of ``video``, read once."""
        if video not in self._truth:
            start = time.perf_counter()
            truth = {exp: self.dataset.ground_truth(video, exp) for exp in self.order(video)}
            missing = [exp for exp, gt in truth.items() if gt is None]
            if missing:
                raise UserError(f"video {video}: expressions {missing} have no ground truth")
            self._truth[video] = truth  # type: ignore[assignment]
            self.seconds_reading += time.perf_counter() - start
        return self._truth[video]

    def has_probabilities(self, source: str) -> bool:
        """Whether every track of ``source`` on the run's videos carries probabilities."""
        return all(
            track.probs is not None
            for video in self.run.videos
            for track in self.tracks(source, video).values()
        )

    # ------------------------------------------------------------------------ scores

    @property
    def evaluations(self) -> int:
        """(candidate, video) votes computed so far (cache hits not counted)."""
        return len(self._rows)

    def scored_specs(self) -> set[VoteSpec]:
        """Every distinct vote scored so far (on one video or more)."""
        return {spec for spec, _ in self._rows}

    def rows(self, spec: VoteSpec, video: str) -> Rows:
        """``(J, F)`` per expression of ``video`` (meta order) of the vote ``spec``."""
        spec = masks_only(spec)
        key = (spec, video)
        if key not in self._rows:
            order = self.order(video)
            sources = [self.tracks(s, video) for s in spec.sources]
            self.truth(video)  # read (once) before the clock starts
            start = time.perf_counter()
            fused, _ = vote_video(sources, order, spec, video=video)
            self._rows[key] = self._score_fused(video, order, fused)
            self.seconds_voting += time.perf_counter() - start
        return self._rows[key]

    def _score_fused(self, video: str, order: Sequence[str], fused: Mapping[str, Track]) -> Rows:
        """``(J, F)`` per expression of fused tracks; an expression whose fused masks were
        scored before (another candidate, the same masks) takes those rows."""
        digests = {exp: _digest(fused[exp].masks) for exp in order}
        fresh = [exp for exp in order if (video, exp, digests[exp]) not in self._by_masks]
        self.expressions_scored += len(fresh)
        self.expressions_reused += len(order) - len(fresh)
        if fresh:
            truth = self.truth(video)
            scored = score_video(
                {exp: fused[exp] for exp in fresh},
                {exp: truth[exp] for exp in fresh},
                self.dataset.video(video).frame_ids,
                protocol=self.protocol,
                video=video,
            )
            for exp, row in zip(fresh, scored, strict=True):
                self._by_masks[(video, exp, digests[exp])] = (row.J, row.F)
        return tuple(self._by_masks[(video, exp, digests[exp])] for exp in order)

    def score(self, spec: VoteSpec, videos: Sequence[str]) -> Score:
        """J&F of the vote ``spec`` over ``videos`` (in the order given)."""
        return mean_score(row for video in videos for row in self.rows(spec, video))

    def node_rows(self, node: str, video: str) -> Rows:
        """``(J, F)`` per expression of the run node's own masks on ``video`` (a vote of the
        node alone at half of its one vote is its masks)."""
        return self.rows(VoteSpec((node,)), video)

    def node_score(self, node: str, videos: Sequence[str]) -> Score:
        """J&F of the run node's own masks over ``videos``."""
        return mean_score(row for video in videos for row in self.node_rows(node, video))

    def pooled(self, chosen: Mapping[str, VoteSpec]) -> Score:
        """J&F over the run's videos where each video is voted by its own spec (``chosen``:
        video -> spec), in split order: the score of a cross-validated procedure."""
        return mean_score(
            row for video in self.run.videos for row in self.rows(chosen[video], video)
        )


def _digest(masks: np.ndarray) -> bytes:
    """A 16-byte digest of a ``T x H x W bool`` mask stack and its shape."""
    digest = hashlib.blake2b(str(masks.shape).encode(), digest_size=16)
    digest.update(np.packbits(masks).tobytes())
    return digest.digest()
