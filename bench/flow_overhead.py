"""Orchestration overhead per (node, video) task, and a stage-II re-run against a full run.

(a) The demo graph with imported producers and the votes only (no propagation) is run twice on
the same inputs: once by calling the per-(node, video) function directly in a loop, once through
the Prefect flow (thread runner, one worker, a local Prefect server), and once more through the
flow with everything cached (the per-run fixed cost: compose, plan, sub-flows, report). The flow
time minus the fixed cost and the direct time, divided by the number of tasks, is the
orchestration overhead per task.
(b) The full demo graph (small random-weight engines) is run from scratch, then again after a
stage-II override; the ratio shows what the cache saves.

    python bench/flow_overhead.py [--videos 4] [--port 4399]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--port", type=int, default=4399)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lsvos-bench-flow-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    from pipeline.orchestration.server import ensure_server, prefect_api

    server = ensure_server(args.port)
    try:
        with prefect_api(server.url):
            run(work, args.videos)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, videos: int) -> None:
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.flow import lsvos_2stage
    from pipeline.orchestration.nodes.run import run_node_video
    from pipeline.orchestration.prepare import prepare_run
    from tests.pipeline.flow_fixtures import demo_with_imports

    base = [o for o in demo_with_imports(work, videos=videos) if "output_root" not in o]
    votes_only = ["runtime.workers=1", "runtime.score=false", "recipe.submission=v1"]
    nodes = ["v1"]

    # (a) direct calls vs the flow, same (node, video) work
    direct_cfg = compose_config([*base, f"runtime.output_root={work / 'direct'}", *votes_only])
    plan = prepare_run(direct_cfg, nodes=nodes)
    start = time.perf_counter()
    n_tasks = 0
    for job in plan.jobs:
        for video in plan.todo[job.name]:
            run_node_video(job, video)
            n_tasks += 1
    direct = time.perf_counter() - start
    flow_overrides = [*base, f"runtime.output_root={work / 'flow'}", *votes_only]
    lsvos_2stage(overrides=flow_overrides, nodes=["soc"])  # warm-up: imports, first API calls
    shutil.rmtree(work / "flow")
    start = time.perf_counter()
    lsvos_2stage(overrides=flow_overrides, nodes=nodes)
    flow = time.perf_counter() - start
    start = time.perf_counter()
    lsvos_2stage(overrides=flow_overrides, nodes=nodes)  # everything cached: the fixed cost
    fixed = time.perf_counter() - start
    per_task = (flow - fixed - direct) / n_tasks
    print(
        f"(a) {n_tasks} (node, video) tasks: direct {direct:.2f} s; flow {flow:.2f} s, of which "
        f"{fixed:.2f} s per-run fixed cost (same flow, all cached) -> orchestration overhead "
        f"{1000 * per_task:.0f} ms per task; flow / direct = {flow / direct:.1f}x"
    )

    # (b) a stage-II re-run against the full run
    full_overrides = [*base, f"runtime.output_root={work / 'full'}", "runtime.workers=2"]
    start = time.perf_counter()
    full = lsvos_2stage(overrides=full_overrides)
    t_full = time.perf_counter() - start
    start = time.perf_counter()
    rerun = lsvos_2stage(overrides=[*full_overrides, "engines.deaot.long_term_gap=3"])
    t_rerun = time.perf_counter() - start
    print(
        f"(b) full run {t_full:.1f} s ({sum(full['computed'].values())} tasks computed); "
        f"stage-II re-run {t_rerun:.1f} s ({rerun['computed']}) -> "
        f"re-run / full = {t_rerun / t_full:.2f}"
    )


if __name__ == "__main__":
    main()
