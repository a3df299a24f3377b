"""A stage-II re-run of the demo graph against its full run, and each part of the re-run's cost.

The demo graph (``recipe=demo``: the tiny in-repo models, the built-in synthetic benchmark of
6 videos, generated before the clock starts) is run by ``lsvos run`` in a fresh process, first
from scratch (the baseline), then again after a stage-II change (``engines.deaot.long_term_gap``),
both against one local Prefect server started here (as a re-run reuses ``lsvos serve``'s).
The re-run / full ratio is the figure; the re-run is then taken apart, each part measured on its
own in this process (imports warmed first, except where the part is the imports):

- interpreter + imports: a fresh interpreter importing what the re-run loads (the CLI and its
  parser, the flow, the engines' adapter with torch and ``vos``); beside it, what checking every
  producer used to add (``pipeline.adapters.producers``: the model library and transformers);
- server: starting one (what a run pays where none answers) against the reuse check;
- compose + check + plan: ``lsvos run`` composes twice (before the server, in the flow), then
  checks and plans; beside it, checking every node as before (each producer's tokenizer);
- node work: the re-run's (node, video) computations called directly;
- package: the submission zip and its validation;
- scoring: with the score cache (only the changed nodes scored) against every node afresh;
- report: ``report.json``, ``report.md`` and ``report.html``;
- Prefect and the rest: the re-run's time less the parts above (flow and task runs, logs).

Everything runs from a snapshot of the source tree copied into the work folder (``--here``: from
this tree): an edit made elsewhere while the bench runs would change node keys between the two
runs and turn the re-run into a partial full run.

    python bench/flow_overhead.py [--port 4399] [--keep] [--here]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RERUN_IMPORTS = (
    "import pipeline.cli as cli; cli.build_parser(); import pipeline.orchestration.flow; "
    "import pipeline.adapters.engines; import pipeline.orchestration.nodes.run"
)
PRODUCER_IMPORTS = "; import pipeline.adapters.producers"


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def lsvos_run(overrides: list[str], env: dict[str, str]) -> float:
    """Wall time of ``lsvos run OVERRIDES`` in a fresh process (its output to a log)."""
    cmd = [sys.executable, "-m", "pipeline.cli", "run", *overrides]
    log = Path(env["LSVOS_BENCH_LOG"])
    with open(log, "ab") as out:
        seconds, proc = timed(
            lambda: subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=out, check=False)
        )
    if proc.returncode != 0:
        raise SystemExit(f"lsvos run failed ({proc.returncode}); see {log}")
    return seconds


def fresh_interpreter(code: str, env: dict[str, str], repeat: int = 3) -> float:
    """The median wall time of ``python -c CODE`` (the interpreter's start included)."""
    cmd = [sys.executable, "-c", code]
    times = [
        timed(lambda: subprocess.run(cmd, cwd=REPO, env=env, check=True))[0] for _ in range(repeat)
    ]
    return sorted(times)[len(times) // 2]


SNAPSHOT = ("pipeline", "models", "vos", "configs", "weights", "bench")


def snapshot(dest: Path) -> Path:
    """A copy of the source the runs execute (caches and outputs left out)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SNAPSHOT:
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4399, help="the bench's Prefect server")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--here", action="store_true", help="run this tree, not a snapshot")
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)  # the snapshot's work folder
    args = parser.parse_args()
    if not args.here:
        work = Path(tempfile.mkdtemp(prefix="lsvos-bench-rerun-"))
        src = snapshot(work / "src")
        cmd = [sys.executable, "bench/flow_overhead.py", "--here", "--work", str(work)]
        cmd += ["--port", str(args.port), *(["--keep"] if args.keep else [])]
        try:
            sys.exit(subprocess.run(cmd, cwd=src, check=False).returncode)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="lsvos-bench-rerun-"))
    print(f"source: {REPO}")
    os.environ["PREFECT_HOME"] = str(work / "prefect")
    from pipeline.orchestration.server import QUIET_ENV, ensure_server, free_port, prefect_api

    env = {**os.environ, **QUIET_ENV, "LSVOS_BENCH_LOG": str(work / "runs.log")}
    print(f"machine: {os.cpu_count()} CPUs; load before {load()}; work folder {work}")
    started, server = timed(lambda: ensure_server(args.port, private=True))
    env["PREFECT_API_URL"] = server.url
    try:
        with prefect_api(server.url):
            measure(work, env, started)
            spare_start, spare = timed(lambda: ensure_server(free_port(), private=True))
            spare.stop()
            print(f"  a second server's start, for comparison: {spare_start:.1f} s")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load after {load()}")


def measure(work: Path, env: dict[str, str], server_start: float) -> None:
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.prepare import prepare_dataset

    base = ["recipe=demo", "dataset=synth", f"runtime.output_root={work / 'out'}"]
    base.append("runtime.progress=false")
    prepare_dataset(compose_config(base).dataset, work / "out")  # the benchmark, generated once

    t_full = lsvos_run(base, env)
    print(f"full run (lsvos run, fresh process, server reused): {t_full:.1f} s; load {load()}")
    rerun = [*base, "engines.deaot.long_term_gap=3"]
    t_rerun = lsvos_run(rerun, env)
    print(
        f"stage-II re-run ({rerun[-1]}): {t_rerun:.1f} s -> re-run / full = "
        f"{t_rerun / t_full:.3f} (target <= 0.10); load {load()}"
    )
    parts = rerun_parts(work, env, base, server_start)
    accounted = sum(v for k, v in parts.items() if not k.startswith("("))
    parts["Prefect and the rest (re-run less the parts above)"] = t_rerun - accounted
    print("the re-run's parts:")
    for name, seconds in parts.items():
        share = "" if name.startswith("(") else f"  {100 * seconds / t_rerun:4.0f}% of the re-run"
        print(f"  {name:62s} {seconds:6.2f} s{share}")


def rerun_parts(
    work: Path, env: dict[str, str], base: list[str], server_start: float
) -> dict[str, float]:
    """Each part of a stage-II re-run, measured alone (a new change, so that there is work)."""
    parts: dict[str, float] = {}
    parts["interpreter + imports (fresh process)"] = fresh_interpreter(RERUN_IMPORTS, env)
    parts["(before: + every producer's adapter and library)"] = fresh_interpreter(
        RERUN_IMPORTS + PRODUCER_IMPORTS, env
    )
    from pipeline.orchestration.server import server_healthy

    parts["server reuse check (its start, not paid: see below)"] = timed(
        lambda: server_healthy(env["PREFECT_API_URL"])
    )[0]
    parts[f"(a server's start, paid where none answers: {server_start:.1f} s)"] = server_start

    import torch

    import pipeline.adapters.engines  # noqa: F401 - warm: the imports are their own part
    from pipeline.orchestration import flow  # noqa: F401
    from pipeline.orchestration.budget import apply_compute_budget, resolve_budget
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.nodes.run import run_node_video
    from pipeline.orchestration.prepare import preflight, prepare_run
    from pipeline.orchestration.recipe import Recipe
    from pipeline.orchestration.report import write_report
    from pipeline.orchestration.score import fresh_scores, score_node_video
    from pipeline.orchestration.submit import package_submission

    overrides = [*base, "engines.deaot.long_term_gap=4"]
    t_compose, cfg = timed(lambda: [compose_config(overrides), compose_config(overrides)][1])
    t_plan, plan = timed(lambda: prepare_run(cfg, run_name="bench-parts"))
    parts["compose x2 + check (nodes to compute) + plan"] = t_compose + t_plan
    every = Recipe.from_config(cfg).select()
    parts["(before: check every node, producers' tokenizers included)"] = timed(
        lambda: preflight(cfg, every)
    )[0]
    todo = [(job, v) for job in plan.jobs for v in plan.todo[job.name]]
    threads = apply_compute_budget(cfg.runtime)
    t_nodes, records = timed(lambda: [run_node_video(job, v) for job, v in todo])
    parts[f"node work ({len(todo)} (node, video) computed, direct, {threads} thread)"] = t_nodes
    cores = resolve_budget(cfg.runtime).cores
    torch.set_num_threads(cores)
    parts[f"(node work again, {cores} threads: a model task alone on the cores)"] = timed(
        lambda: [run_node_video(job, v) for job, v in todo]
    )[0]
    parts["package (zip + validation)"] = timed(lambda: package_submission(plan))[0]
    pairs = [(job, v) for job in plan.jobs for v in plan.videos]
    t_score, rows = timed(lambda: [r for j, v in pairs for r in score_node_video(plan, j, v)])
    parts[f"scoring, score cache ({len(pairs)} (node, video), changed ones scored)"] = t_score
    t_all, fresh = timed(lambda: [r for j, v in pairs for r in fresh_scores(plan, j, v)])
    assert rows == fresh, "cached scores differ from fresh ones"
    parts["(before: every (node, video) scored afresh, no task overhead)"] = t_all
    parts["report (json, md, html)"] = timed(lambda: write_report(plan, records, None, rows))[0]
    return parts


if __name__ == "__main__":
    main()
