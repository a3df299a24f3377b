"""What a run will do: the nodes, their cache folders, the (node, video) pairs still to compute,
and every check that must pass before any work starts (paths, weights, model families).

A :class:`RunPlan` is plain, picklable data: Prefect tasks (threads, processes, Dask workers)
receive it whole, never a Hydra object.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.cache import dataset_identity, node_dir, node_keys
from pipeline.errors import UserError
from pipeline.recipe import Node, Recipe


@dataclass(frozen=True)
class NodeJob:
    """One node, with everything a task needs to compute it on a video.

    ``kind`` is ``produce``, ``import``, ``vote`` or ``propagate``; ``settings`` holds the
    producer's or engine's config (empty for votes); ``input_dirs`` the mask-set folder of each
    input node.
    """

    name: str
    kind: str
    stage: str
    params: dict[str, Any]
    settings: dict[str, Any]
    key: str
    out_dir: str
    inputs: tuple[str, ...]
    input_dirs: dict[str, str]
    dataset: dict[str, Any]


@dataclass
class RunPlan:
    """The whole run, decided before any work."""

    cfg: dict[str, Any]
    recipe_name: str
    run_dir: str
    dataset: dict[str, Any]
    videos: list[str]
    jobs: list[NodeJob]
    todo: dict[str, list[str]]
    submission_node: str | None
    package_format: str
    has_ground_truth: bool
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def progress(self) -> bool:
        return bool(self.runtime.get("progress", True))

    @property
    def packages_submission(self) -> bool:
        return self.submission_node is not None

    @property
    def scores(self) -> bool:
        return self.has_ground_truth and bool(self.runtime.get("score", True))

    def job(self, name: str) -> NodeJob:
        return next(j for j in self.jobs if j.name == name)

    def describe(self) -> str:
        todo = sum(len(v) for v in self.todo.values())
        total = len(self.jobs) * len(self.videos)
        return (
            f"recipe {self.recipe_name}: {len(self.jobs)} nodes x {len(self.videos)} videos; "
            f"{todo} of {total} (node, video) outputs to compute, {total - todo} cached; "
            f"run folder {self.run_dir}"
        )

    def task_runner(self) -> Any:
        """The Prefect task runner the runtime config asks for."""
        kind = self.runtime.get("task_runner", "thread")
        workers = int(self.runtime.get("workers", 2))
        if kind == "thread":
            from prefect.task_runners import ThreadPoolTaskRunner

            return ThreadPoolTaskRunner(max_workers=workers)
        if kind == "dask":
            try:
                from prefect_dask import DaskTaskRunner
            except ImportError as err:
                raise UserError(
                    "runtime.task_runner=dask needs prefect-dask: pip install prefect-dask"
                ) from err
            address = self.runtime.get("dask_address")
            if address:
                return DaskTaskRunner(address=address)
            return DaskTaskRunner(
                cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True}
            )
        if kind == "ray":
            try:
                from prefect_ray import RayTaskRunner
            except ImportError as err:
                raise UserError(
                    "runtime.task_runner=ray needs prefect-ray: pip install prefect-ray"
                ) from err
            return RayTaskRunner(address=self.runtime.get("dask_address"))
        raise UserError(f"runtime.task_runner must be thread, dask or ray, not {kind!r}")


def make_plan(
    cfg: dict[str, Any],
    *,
    nodes: Iterable[str] | None = None,
    stages: Iterable[str] | None = None,
    refresh: bool = False,
    refresh_nodes: Iterable[str] | None = None,
    run_name: str | None = None,
) -> RunPlan:
    """Validate everything, prepare the dataset, and decide what to compute."""
    from pipeline import nodes as node_work

    recipe = Recipe.from_config(cfg)
    selected = recipe.select(nodes, stages)
    runtime = dict(cfg["runtime"])
    output_root = Path(runtime["output_root"]).resolve()
    runtime["output_root"] = str(output_root)
    problems = node_work.preflight(cfg, selected)
    if problems:
        raise UserError("cannot start the run:\n  - " + "\n  - ".join(problems))
    dataset = _prepare_dataset(dict(cfg["dataset"]))
    dataset_handle = node_work.open_dataset_cached(dataset)
    videos = [v.id for v in dataset_handle.videos()]
    if dataset.get("videos"):
        wanted = set(dataset["videos"])
        unknown = sorted(wanted - set(videos))
        if unknown:
            raise UserError(f"dataset.videos lists videos not in the split: {unknown}")
        videos = [v for v in videos if v in wanted]
    if not videos:
        raise UserError(f"no videos in {dataset['root']} split {dataset['split']!r}")

    keys = node_keys(recipe, {**cfg, "dataset": dataset})
    dataset_id = dataset_identity(dataset)
    dirs = {n.name: str(node_dir(output_root, dataset_id, n.name, keys[n.name])) for n in selected}
    forced = set(recipe.by_name) if refresh else set(refresh_nodes or ())
    unknown = sorted(forced - set(recipe.by_name))
    if unknown:
        raise UserError(f"refresh_nodes: unknown nodes {unknown}")
    jobs = [_job(n, cfg, dataset, keys[n.name], dirs, _needs_probs(recipe)) for n in selected]
    node_work.prepare_outputs(jobs)
    # A (node, video) is computed when forced, incomplete, or when an input is recomputed for
    # that video (jobs are in topological order, so inputs are decided first).
    todo: dict[str, list[str]] = {}
    for job in jobs:
        upstream = {v for i in job.inputs for v in todo.get(i, ())}
        todo[job.name] = [
            v
            for v in videos
            if job.name in forced or v in upstream or not node_work.is_complete(job, v)
        ]
    name = run_name or runtime.get("run_name") or f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = output_root / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True))
    submission = recipe.submission if recipe.submission in dirs else None
    return RunPlan(
        cfg=cfg,
        recipe_name=recipe.name,
        run_dir=str(run_dir),
        dataset=dataset,
        videos=videos,
        jobs=jobs,
        todo=todo,
        submission_node=submission,
        package_format=recipe.package_format,
        has_ground_truth=dataset_handle.has_ground_truth,
        runtime=runtime,
    )


def _needs_probs(recipe: Recipe) -> set[str]:
    """Nodes whose soft probabilities a vote reads (source 0 of a sigmoid-twice vote)."""
    return {
        n.params["sources"][0]
        for n in recipe.nodes
        if n.kind == "vote" and n.params.get("sigmoid_twice_compat")
    }


def _job(
    node: Node,
    cfg: dict[str, Any],
    dataset: dict[str, Any],
    key: str,
    dirs: dict[str, str],
    keep_probs: set[str],
) -> NodeJob:
    kind = node.kind
    settings: dict[str, Any] = {}
    if kind == "produce":
        settings = dict(cfg["producers"][node.params["producer"]])
        if settings["family"] == "import":
            kind = "import"
    elif kind == "propagate":
        settings = dict(cfg["engines"][node.params["engine"]])
    return NodeJob(
        name=node.name,
        kind=kind,
        stage=node.stage,
        params={**node.params, "keep_probs": node.name in keep_probs},
        settings=settings,
        key=key,
        out_dir=dirs[node.name],
        inputs=node.inputs,
        input_dirs={i: dirs[i] for i in node.inputs},
        dataset=dataset,
    )


def _prepare_dataset(dataset: dict[str, Any]) -> dict[str, Any]:
    """Resolve the root; generate the synthetic benchmark there on first use."""
    root = Path(dataset["root"]).resolve()
    dataset["root"] = str(root)
    synthetic = dataset.get("synthetic")
    if synthetic and synthetic.get("generate") and not (root / "meta_expressions").is_dir():
        from pipeline.data import write_synthetic_benchmark

        write_synthetic_benchmark(
            root, seed=int(synthetic["seed"]), videos=int(synthetic["videos"])
        )
    if not root.is_dir():
        raise UserError(f"dataset root not found: {root} (set dataset.root=...)")
    return dataset
