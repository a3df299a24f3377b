"""The search over votes, and its k-fold cross-validation over videos.

:func:`choose` picks a vote on a set of videos: subsets of sources grow one source at a time;
every subset is voted over the whole grid of :class:`~.space.SearchSpace`, and the best vote of
each subset ranks it (``top_sources``: only that many best sources on those videos are
voted). With at most ``exhaustive_up_to`` sources every subset (up to
``max_sources``) is tried (exhaustive); with more, only extensions of the ``beam`` best subsets
of each size are (a beam search). The best vote by J&F wins; ties go to fewer sources, then to
the first tried.

:func:`tune` cross-validates that procedure: the videos are cut into ``k`` folds (a seeded
permutation, dealt round-robin); for each fold the vote is chosen on the other folds and scored
on it, and so is the best single producer (the producer with the best J&F on the other folds).
The cross-validated score pools the held-out expressions of every fold (each expression scored
by the choice made without its video). The base recipe's vote nodes are fixed, so their pooled
score is their score on the split. The final choice is :func:`choose` on every video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.vote import VoteSpec
from pipeline.orchestration.config import VoteNode
from pipeline.orchestration.tune.evaluate import Evaluator, Score
from pipeline.orchestration.tune.space import Candidate, SearchSpace


@dataclass(frozen=True)
class Ranked:
    """A candidate and its J&F on the videos it was chosen on."""

    candidate: Candidate
    score: Score


@dataclass
class SearchResult:
    """What :func:`choose` tried (``ranked``: best first) and how (``method``)."""

    ranked: list[Ranked]
    subsets: int
    method: str

    @property
    def best(self) -> Candidate:
        return self.ranked[0].candidate


@dataclass(frozen=True)
class FoldResult:
    """One fold: the vote chosen on the other folds, and the best producer chosen there, with
    their scores on the held-out videos."""

    held_out: tuple[str, ...]
    chosen: Candidate
    train: Score
    held_out_score: Score
    best_producer: str | None
    best_producer_score: Score | None


@dataclass
class TuneResult:
    """The cross-validated search (``folds``, ``cv``), the baselines on the same folds and the
    final choice on every video (``final``). ``base_nodes``: each vote node of the base recipe
    on the whole split (its pooled held-out score: a fixed node is not fitted)."""

    folds: list[FoldResult]
    cv: Score
    best_producer_cv: Score | None
    base_nodes: dict[str, Score]
    base_submission: str | None
    final: SearchResult
    videos: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> Candidate:
        return self.final.best


def default_space(
    evaluator: Evaluator, sources: Sequence[str] | None = None, **options: Any
) -> SearchSpace:
    """The search space over ``sources`` (default: every complete node of the run);
    ``options``: the other fields of :class:`~.space.SearchSpace` (``modes``, ``max_sources``,
    ...).

    A soft vote may read a source when voting it soft scores what the written recipe will
    compute: a node whose cached tracks carry probabilities, or one that never keeps them (a
    propagation, a hard vote: both vote 0 / 1). A producer cached without probabilities would be
    recomputed with them once a soft vote reads it, and score otherwise than searched. A soft
    vote is tried only where one of its sources has probabilities.
    """
    run = evaluator.run
    chosen = tuple(sources) if sources else tuple(run.nodes)
    unknown = [s for s in chosen if s not in run.nodes]
    if unknown:
        raise UserError(
            f"sources {unknown} are not complete nodes of the run; complete: {list(run.nodes)}"
            + (f"; not computed: {run.missing}" if run.missing else "")
        )
    soft: set[str] = set()
    probabilities: set[str] = set()
    if "soft" in options.get("modes", ()):
        for name in chosen:
            config = run.recipe.by_name[name].config
            binary_only = run.nodes[name].kind == "propagate" or (
                isinstance(config, VoteNode) and config.mode == "hard"
            )
            if evaluator.has_probabilities(name):
                probabilities.add(name)
                soft.add(name)
            elif binary_only:
                soft.add(name)
    return SearchSpace(
        chosen,
        soft_sources=frozenset(soft),
        probability_sources=frozenset(probabilities),
        **options,
    )


def choose(evaluator: Evaluator, space: SearchSpace, videos: Sequence[str]) -> SearchResult:
    """The best vote of ``space`` on ``videos`` (see the module docstring)."""
    source_jf = {s: evaluator.node_score(s, videos).JF for s in space.sources}
    pool = space.pool(source_jf)
    tried: dict[VoteSpec, Ranked] = {}
    level: list[tuple[str, ...]] = [(s,) for s in pool]
    subsets = 0
    for _size in range(1, space.max_sources + 1):
        if not level:
            break
        best_of: dict[tuple[str, ...], float] = {}
        for subset in level:
            subsets += 1
            for candidate in space.candidates(subset, source_jf):
                if candidate.spec not in tried:
                    score = evaluator.score(candidate.spec, videos)
                    tried[candidate.spec] = Ranked(candidate, score)
                jf = tried[candidate.spec].score.JF
                best_of[subset] = max(best_of.get(subset, -1.0), jf)
        kept = list(best_of)
        if not space.exhaustive:
            kept = sorted(kept, key=lambda s: -best_of[s])[: space.beam]
        level = _extensions(kept, pool)
    ranked = sorted(tried.values(), key=lambda r: (-r.score.JF, len(r.candidate.sources)))
    return SearchResult(ranked, subsets, "exhaustive" if space.exhaustive else "beam")


def _extensions(
    subsets: Sequence[tuple[str, ...]], sources: Sequence[str]
) -> list[tuple[str, ...]]:
    """Each subset with one more source, in run order, each once."""
    out: dict[tuple[str, ...], None] = {}
    for subset in subsets:
        for source in sources:
            if source not in subset:
                grown = set(subset) | {source}
                out.setdefault(tuple(s for s in sources if s in grown), None)
    return list(out)


def make_folds(videos: Sequence[str], k: int, seed: int) -> list[tuple[str, ...]]:
    """``k`` folds of ``videos``: a permutation seeded by ``seed``, dealt round-robin; each
    fold keeps split order."""
    if not 2 <= k <= len(videos):
        raise UserError(f"--folds must be between 2 and the {len(videos)} videos, got {k}")
    order = np.random.default_rng(seed).permutation(len(videos))
    position = {v: i for i, v in enumerate(videos)}
    folds: list[list[str]] = [[] for _ in range(k)]
    for rank, index in enumerate(order):
        folds[rank % k].append(videos[int(index)])
    return [tuple(sorted(fold, key=position.__getitem__)) for fold in folds]


def tune(evaluator: Evaluator, space: SearchSpace, k: int, seed: int = 0) -> TuneResult:
    """Cross-validate :func:`choose` over ``k`` folds, then choose on every video."""
    run = evaluator.run
    videos = list(run.videos)
    producers = [name for name, node in run.nodes.items() if node.is_producer]
    folds: list[FoldResult] = []
    per_video: dict[str, VoteSpec] = {}
    producer_per_video: dict[str, VoteSpec] = {}
    for held_out in make_folds(videos, k, seed):
        train = [v for v in videos if v not in held_out]
        result = choose(evaluator, space, train)
        best_producer = None
        producer_score = None
        if producers:
            best_producer = max(producers, key=lambda p: evaluator.node_score(p, train).JF)
            producer_score = evaluator.node_score(best_producer, held_out)
            producer_per_video.update({v: VoteSpec((best_producer,)) for v in held_out})
        per_video.update({v: result.best.spec for v in held_out})
        folds.append(
            FoldResult(
                held_out,
                result.best,
                result.ranked[0].score,
                evaluator.score(result.best.spec, held_out),
                best_producer,
                producer_score,
            )
        )
    base = run.vote_nodes()
    if run.submission is not None and run.submission not in base:
        base.append(run.submission)
    base_nodes = {name: evaluator.node_score(name, videos) for name in base}
    return TuneResult(
        folds=folds,
        cv=evaluator.pooled(per_video),
        best_producer_cv=evaluator.pooled(producer_per_video) if producers else None,
        base_nodes=base_nodes,
        base_submission=run.submission,
        final=choose(evaluator, space, videos),
        videos=videos,
    )
