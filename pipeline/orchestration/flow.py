"""The Prefect flow ``lsvos-2stage``: compose, prepare, run the graph per (node, video),
package, score, report.

Reads like a table of contents; the work lives in :mod:`~pipeline.orchestration.prepare` (checks
and the plan), :mod:`~pipeline.orchestration.nodes` (one node on one video),
:mod:`~pipeline.orchestration.submit`, :mod:`~pipeline.orchestration.score` and
:mod:`~pipeline.orchestration.report`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait

from pipeline.core.errors import UserError
from pipeline.orchestration.config import RuntimeConfig, compose_config
from pipeline.orchestration.jobs import NodeJob, RunPlan
from pipeline.orchestration.logs import quiet_user_error_tracebacks
from pipeline.orchestration.prepare import prepare_run
from pipeline.orchestration.progress import ProgressReporter

FLOW_NAME = "lsvos-2stage"
quiet_user_error_tracebacks()  # also in the processes a served deployment starts


# Model tasks (a producer or an engine on a video) compute one at a time in a process
# (pipeline.core.memory.model_slot); votes, scoring and I/O still run alongside them.
MODEL_KINDS = frozenset({"produce", "propagate"})


@task(name="node-video", task_run_name="{job.name}/{video_id}", cache_policy=NO_CACHE)
def node_video_task(
    job: NodeJob, video_id: str, progress: bool = False, runtime: RuntimeConfig | None = None
) -> dict[str, Any]:
    """Compute one node's mask set for one video (atomic; skipped when already complete);
    ``progress``: report the node's inner loop while it runs; ``runtime``: the run's compute
    budget, applied to this worker first (None: threads left as they are)."""
    from pipeline.core.memory import model_slot, release_freed_memory
    from pipeline.orchestration.nodes.run import run_node_video
    from pipeline.orchestration.progress import task_progress

    model_task = job.kind in MODEL_KINDS
    if runtime is not None:
        from pipeline.orchestration.budget import apply_compute_budget

        apply_compute_budget(runtime, load_torch=model_task)  # process-wide, see budget.py
    with model_slot(model_task):
        try:
            with task_progress(progress):
                return run_node_video(job, video_id)
        finally:  # what the task freed goes back to the OS, not under the next task's peak
            release_freed_memory()


@task(name="package", cache_policy=NO_CACHE)
def package_task(plan: RunPlan) -> dict[str, Any]:
    """Zip the submission node in the challenge layout, then validate the zip."""
    from pipeline.orchestration.submit import package_submission

    return package_submission(plan)


@task(name="score", task_run_name="score/{job.name}/{video_id}", cache_policy=NO_CACHE)
def score_task(plan: RunPlan, job: NodeJob, video_id: str) -> list[dict[str, Any]]:
    """J and F of one node's masks on one video, per expression (then cached beside them)."""
    from pipeline.orchestration.budget import apply_compute_budget
    from pipeline.orchestration.score import score_node_video

    apply_compute_budget(plan.runtime, load_torch=False)
    return score_node_video(plan, job, video_id)


@flow(name="run-graph")
def run_graph(plan: RunPlan) -> list[dict[str, Any]]:
    """Submit one task per (node, video) that is not complete yet, each after its inputs."""
    futures: dict[tuple[str, str], PrefectFuture[dict[str, Any]]] = {}
    for job in plan.jobs:
        for video_id in plan.todo[job.name]:
            upstream = [futures[(i, video_id)] for i in job.inputs if (i, video_id) in futures]
            futures[(job.name, video_id)] = node_video_task.with_options(tags=[job.kind]).submit(
                job, video_id, plan.progress, plan.runtime, wait_for=upstream
            )
    progress = ProgressReporter("nodes x videos", total=len(futures), enabled=plan.progress)
    records = []
    try:
        for future in progress.track(futures.values()):
            records.append(future.result())
    except BaseException:
        cancel_pending(futures.values())  # the run has failed: start no more of its work
        raise
    return records


def cancel_pending(futures: Iterable[PrefectFuture[Any]]) -> int:
    """Cancel the futures whose task has not started (running ones finish); how many."""
    cancelled = 0
    for future in futures:
        cancel = getattr(getattr(future, "wrapped_future", None), "cancel", None)
        if cancel is not None and cancel():
            cancelled += 1
    return cancelled


def score_run(plan: RunPlan) -> list[dict[str, Any]]:
    """Every node's scores on every video, in graph then video order: those cached beside
    unchanged masks (:mod:`pipeline.orchestration.score`) are read here, the others scored by
    the ``score-graph`` sub-flow, which does not start when everything is cached."""
    from pipeline.orchestration.score import cached_scores

    pairs = [(job.name, video) for job in plan.jobs for video in plan.videos]
    rows = {pair: cached_scores(plan, plan.job(pair[0]), pair[1]) for pair in pairs}
    missing = [[name, video] for (name, video), found in rows.items() if found is None]
    if missing:
        scored = score_graph.with_options(task_runner=task_runner(plan.runtime))(plan, missing)
        rows.update({(name, video): r for (name, video), r in zip(missing, scored, strict=True)})
    return [row for pair in pairs for row in rows[pair] or []]


@flow(name="score-graph")
def score_graph(plan: RunPlan, pairs: list[list[str]]) -> list[list[dict[str, Any]]]:
    """Score each ``[node, video]`` of ``pairs`` (one task each); their rows, in that order."""
    futures = [score_task.submit(plan, plan.job(name), video) for name, video in pairs]
    wait(futures)
    return [f.result() for f in futures]


@flow(name=FLOW_NAME, log_prints=True)
def lsvos_2stage(
    overrides: list[str] | None = None,
    nodes: list[str] | None = None,
    stages: list[str] | None = None,
    refresh: bool = False,
    refresh_nodes: list[str] | None = None,
) -> dict[str, Any]:
    """Run a recipe on a dataset split.

    Args:
        overrides: Hydra overrides, e.g. ``["recipe=lsvos2023", "dataset=ytvos",
            "dataset.root=/data/rvos"]``.
        nodes: run only these nodes (and what they need); default all.
        stages: run only the nodes of these stages (and what they need).
        refresh: recompute every selected node even where its output is cached.
        refresh_nodes: recompute these nodes even where cached.
    """
    from pipeline.orchestration.report import write_report

    logger = get_run_logger()
    cfg = compose_config(overrides or [])
    plan = prepare_run(
        cfg, nodes=nodes, stages=stages, refresh=refresh, refresh_nodes=refresh_nodes
    )
    logger.info(plan.describe())
    records = (
        run_graph.with_options(task_runner=task_runner(plan.runtime))(plan)
        if any(plan.todo.values())
        else []  # everything cached: no sub-flow to start
    )
    submission = package_task(plan) if plan.packages_submission else None
    scores = score_run(plan) if plan.scores else []
    summary = write_report(plan, records, submission, scores)
    logger.info("report: %s", summary["report_md"])
    print(summary["table"])
    return summary


def task_runner(runtime: RuntimeConfig) -> Any:
    """The Prefect task runner ``runtime`` asks for (threads, a Dask cluster or Ray)."""
    kind = str(runtime.task_runner)
    if kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=runtime.workers)
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as err:
            raise UserError(
                "runtime.task_runner=dask needs prefect-dask: pip install prefect-dask"
            ) from err
        if runtime.dask_address:
            return DaskTaskRunner(address=runtime.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": runtime.workers,
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",  # every socket of the run on loopback
                "dashboard_address": "127.0.0.1:8787",
            }
        )
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as err:
        raise UserError(
            "runtime.task_runner=ray needs prefect-ray: pip install prefect-ray"
        ) from err
    return RayTaskRunner(address=runtime.dask_address)
