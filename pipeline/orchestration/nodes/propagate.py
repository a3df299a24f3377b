"""A propagate node on one video: key-frame masks propagated forward and backward."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.errors import UserError
from pipeline.core.masks import MaskSet, Track
from pipeline.orchestration.config import PropagateNode
from pipeline.orchestration.jobs import NodeJob
from pipeline.orchestration.progress import node_progress
from pipeline.orchestration.splits import expression_ids, open_split


def propagate(job: NodeJob, video: str, out: MaskSet) -> None:
    import torch

    from pipeline.adapters.engines import get_propagator, protocol_config
    from vos.protocol import propagate_video

    node = job.node
    assert isinstance(node, PropagateNode), job.name
    engine = job.required_engine()
    dataset = open_split(job.dataset)
    info = dataset.video(video)
    expressions = expression_ids(job.dataset, video)
    source = MaskSet(job.input_dirs[node.source])
    key_node = node.key_frame_node
    key_frames = key_frames_of(MaskSet(job.input_dirs[key_node]), video, expressions, key_node)
    frames = torch.from_numpy(dataset.read_frames(video)).permute(0, 3, 1, 2).contiguous()
    masks = {exp: torch.from_numpy(source.read(video, exp).masks) for exp in expressions}
    try:
        propagator = get_propagator(engine)
    except UserError as err:
        raise UserError(f"propagate {job.name}: {err}") from err
    with node_progress(f"{job.name}/{video}", "frames") as report:
        results = propagate_video(
            propagator, frames, masks, key_frames, protocol_config(engine), progress=report
        )
    for exp in expressions:
        out.write(video, exp, Track(info.frame_ids, results[exp].masks.cpu().numpy()))
    out.mark_complete(video, expressions)


def key_frames_of(
    maskset: MaskSet, video: str, expressions: Sequence[str], node: str
) -> dict[str, int]:
    """Key frames recorded by ``node`` (a vote or producer), else argmax of its scores."""
    recorded = maskset.key_frames(video)
    chosen: dict[str, int] = {}
    for exp in expressions:
        if exp in recorded:
            chosen[exp] = int(recorded[exp])
            continue
        key = maskset.read(video, exp).key_frame()
        if key is None:
            raise UserError(
                f"node {node}: video {video} expression {exp} has no key frame and no per-frame "
                "scores to choose one; set keyframe_from to a node that has them"
            )
        chosen[exp] = int(key)
    return chosen
