"""The work behind every node-video task: dispatch a job to its kind's module, atomically."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipeline.core.masks import MaskSet
from pipeline.orchestration.jobs import NodeJob
from pipeline.orchestration.nodes.import_predictions import import_predictions
from pipeline.orchestration.nodes.produce import produce
from pipeline.orchestration.nodes.propagate import propagate
from pipeline.orchestration.nodes.vote import vote

NODE_WORK: dict[str, Callable[[NodeJob, str, MaskSet], None]] = {
    "produce": produce,
    "import": import_predictions,
    "vote": vote,
    "propagate": propagate,
}


def run_node_video(job: NodeJob, video: str) -> dict[str, Any]:
    """Compute ``job``'s mask set for ``video``; returns a small record of what was done."""
    start = time.perf_counter()
    out = MaskSet(job.out_dir)
    out.discard(video)  # a forced recompute, or the remains of an interrupted one
    with out.writing(video):
        NODE_WORK[job.kind](job, video, out)
    return {
        "node": job.name,
        "video": video,
        "status": "computed",
        "seconds": round(time.perf_counter() - start, 3),
    }
