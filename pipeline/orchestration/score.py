"""Score one node's masks on one video against the split's ground truth."""

from __future__ import annotations

from typing import Any

from pipeline.core.masks import MaskSet
from pipeline.core.scoring import score_video
from pipeline.orchestration.jobs import NodeJob, RunPlan
from pipeline.orchestration.splits import expression_ids, open_split

_PROTOCOL = {"ytvos": "ytvos", "mevis": "mevis", "davis": "ytvos"}


def score_node_video(plan: RunPlan, job: NodeJob, video: str) -> list[dict[str, Any]]:
    """Per-expression J and F of ``job``'s masks on ``video`` (the dataset's protocol)."""
    dataset = open_split(plan.dataset)
    maskset = MaskSet(job.out_dir)
    expressions = expression_ids(plan.dataset, video)
    gt = {exp: dataset.ground_truth(video, exp) for exp in expressions}
    if any(g is None for g in gt.values()):
        return []
    preds = {exp: maskset.read(video, exp) for exp in expressions}
    protocol = _PROTOCOL[str(plan.dataset.format)]
    rows = score_video(
        preds,
        gt,  # type: ignore[arg-type]
        dataset.video(video).frame_ids,
        protocol=protocol,  # type: ignore[arg-type]
        video=video,
    )
    return [
        {"node": job.name, "video": r.video, "expression": r.expression, "J": r.J, "F": r.F}
        for r in rows
    ]
