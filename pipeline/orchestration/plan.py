"""What a run will do, decided before any work: the nodes, their keys and cache folders, and
the (node, video) pairs still to compute.

:func:`make_plan` is pure: it reads the split, the weights files (for their content identity)
and the cache's completion markers, and writes nothing. The run's side effects (generating the
synthetic benchmark, creating folders, writing ``config.json``) live in
:mod:`pipeline.orchestration.prepare`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from pipeline.core.data import RVOSDataset
from pipeline.core.errors import UserError
from pipeline.orchestration.budget import resolve_budget
from pipeline.orchestration.cache import FileIdentities, dataset_identity, node_dir, node_key
from pipeline.orchestration.config import DatasetConfig, LsvosConfig, ProduceNode, PropagateNode
from pipeline.orchestration.jobs import NodeJob, RunPlan
from pipeline.orchestration.recipe import Node, Recipe


def make_plan(
    cfg: LsvosConfig,
    recipe: Recipe,
    selected: Sequence[Node],
    dataset: DatasetConfig,
    split: RVOSDataset,
    files: FileIdentities,
    *,
    run_name: str,
    refresh: bool = False,
    refresh_nodes: Iterable[str] | None = None,
) -> RunPlan:
    """The plan of ``selected`` (a closed selection of ``recipe``) on ``dataset``, whose root
    is resolved and whose reader is ``split``."""
    videos = _videos(dataset, split)
    resolve_budget(cfg.runtime)  # a bad runtime.workers / threads_per_worker fails here
    output_root = Path(cfg.runtime.output_root).resolve()
    dataset_id = dataset_identity(dataset, split, split.video_ids())
    forced = set(recipe.by_name) if refresh else set(refresh_nodes or ())
    unknown = sorted(forced - set(recipe.by_name))
    if unknown:
        raise UserError(f"refresh_nodes: unknown nodes {unknown}")
    soft = recipe.soft_inputs()
    jobs: list[NodeJob] = []
    keys: dict[str, str] = {}
    dirs: dict[str, str] = {}
    for node in selected:  # topological order: inputs first
        producer = (
            cfg.producers[node.config.producer] if isinstance(node.config, ProduceNode) else None
        )
        engine = cfg.engines[node.config.engine] if isinstance(node.config, PropagateNode) else None
        job = NodeJob(
            name=node.name,
            node=node.config,
            key="",
            out_dir="",
            input_dirs={i: dirs[i] for i in node.inputs},
            dataset=dataset,
            producer=producer,
            engine=engine,
            keep_probs=node.name in soft,
        )
        key = node_key(
            job.node,
            kind=job.kind,
            producer=producer,
            engine=engine,
            keep_probs=job.keep_probs,
            input_keys=[keys[i] for i in node.inputs],
            dataset_id=dataset_id,
            files=files,
        )
        keys[node.name] = key
        dirs[node.name] = str(node_dir(output_root, dataset_id, node.name, key))
        jobs.append(replace(job, key=key, out_dir=dirs[node.name]))
    # A (node, video) is computed when forced, incomplete, or when an input is recomputed for
    # that video (jobs are in topological order, so inputs are decided first).
    todo: dict[str, list[str]] = {}
    for job in jobs:
        upstream = {v for i in job.inputs for v in todo.get(i, ())}
        todo[job.name] = [
            v for v in videos if job.name in forced or v in upstream or not job.is_complete(v)
        ]
    return RunPlan(
        cfg=cfg,
        recipe_name=recipe.name,
        run_dir=str(output_root / "runs" / run_name),
        dataset=dataset,
        dataset_id=dataset_id,
        videos=videos,
        jobs=jobs,
        todo=todo,
        submission_node=recipe.submission if recipe.submission in dirs else None,
        package_format=recipe.package_format,
        has_ground_truth=split.has_ground_truth,
        runtime=replace(cfg.runtime, output_root=str(output_root)),
    )


def _videos(dataset: DatasetConfig, split: RVOSDataset) -> list[str]:
    videos = split.video_ids()
    if dataset.videos:
        wanted = set(dataset.videos)
        unknown = sorted(wanted - set(videos))
        if unknown:
            raise UserError(f"dataset.videos lists videos not in the split: {unknown}")
        videos = [v for v in videos if v in wanted]
    if not videos:
        raise UserError(f"no videos in {dataset.root} split {dataset.split!r}")
    return videos
