"""A vote node on one video: the pixel vote over its sources (:mod:`pipeline.core.vote`)."""

from __future__ import annotations

from pipeline.core.masks import MaskSet
from pipeline.core.vote import VoteSpec, vote_mask_sets
from pipeline.orchestration.config import VoteNode
from pipeline.orchestration.jobs import NodeJob
from pipeline.orchestration.splits import expression_ids


def vote_spec(node: VoteNode) -> VoteSpec:
    """The core vote's specification of a vote node (a bad combination of settings is a
    :class:`~pipeline.core.errors.UserError`; the recipe checks every node with it)."""
    return VoteSpec(
        sources=tuple(node.sources),
        weights=tuple(node.weights) if node.weights else None,
        min_votes=node.min_votes,
        pairs=node.pairs,
        odd_policy=str(node.odd),
        odd_min_votes=node.odd_min_votes,
        sigmoid_twice=node.sigmoid_twice_compat,
        key_frame_source=node.keyframe_from,
        resize=node.resize,
        mode=str(node.mode),
        prob_threshold=node.prob_threshold,
        key_frame_rule=str(node.key_frame_rule),
    )


def vote(job: NodeJob, video: str, out: MaskSet) -> None:
    """Vote ``video`` into ``out``; a soft vote whose probabilities a downstream vote reads
    (``job.keep_probs``) stores them too."""
    assert isinstance(job.node, VoteNode), job.name
    sources = [MaskSet(job.input_dirs[s]) for s in job.node.sources]
    vote_mask_sets(
        sources,
        out,
        vote_spec(job.node),
        videos=[video],
        expression_order={video: expression_ids(job.dataset, video)},
        workers=1,
        resume=False,
        keep_probs=job.keep_probs,
    )
