"""Package the submission node's masks in the challenge layout and validate the zip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.data import SplitMeta
from pipeline.core.masks import MaskSet
from pipeline.core.submission import package, validate
from pipeline.orchestration.jobs import RunPlan
from pipeline.orchestration.splits import open_split


def package_submission(plan: RunPlan) -> dict[str, Any]:
    """Write ``<run>/submission.zip`` and return a record of it (valid, first problems)."""
    assert plan.submission_node is not None
    job = plan.job(plan.submission_node)
    dataset = open_split(plan.dataset)
    meta = SplitMeta({v: dataset.meta.videos[v] for v in plan.videos}, dataset.meta.path)
    zip_path = Path(plan.run_dir) / "submission.zip"
    fmt = plan.package_format
    package(MaskSet(job.out_dir), meta, fmt, zip_path, frame_root=dataset.frame_root)
    problems = validate(zip_path, meta, fmt, frame_root=dataset.frame_root)
    return {
        "zip": str(zip_path),
        "format": fmt,
        "node": job.name,
        "valid": not problems,
        "problems": [str(p) for p in problems[:20]],
    }
