"""The recipe search (``lsvos tune``) against running each of its candidates as a recipe.

Setup: the synthetic benchmark (``--videos`` videos at its default sizes) and four imported
"producers" (its ground truth with seeded corruptions, tests/pipeline/flow_fixtures.py); the
demo graph's producers and stage-I vote ``v1`` computed by the node functions, each (node,
video) timed, and each node's score per video timed (the flow's ``fresh_scores``).

Search: the in-memory search of :mod:`pipeline.orchestration.tune` over the five nodes (hard
votes; ``--max-sources``), cross-validated over ``--folds`` folds, from a cold evaluator (its
track reads included). Reported: time per evaluated (candidate, video) and per candidate.

Baseline, from the same run's measurements: each distinct candidate the search scored, run as a
recipe from scratch on the whole split = per video, its producers' (node, video) times + one
vote node's + one score's (the measured means). A lower bound: a real run also pays the flow's
start, planning and packaging, and real producers take seconds to minutes per video where these
imports take milliseconds (so the ratio here is the smallest it gets).

    python bench/tune_search.py [--videos 6] [--folds 3] [--max-sources 4]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from pipeline.orchestration.config import compose_config
from pipeline.orchestration.nodes.run import run_node_video
from pipeline.orchestration.prepare import prepare_run
from pipeline.orchestration.score import fresh_scores
from pipeline.orchestration.tune.evaluate import Evaluator
from pipeline.orchestration.tune.run_nodes import nodes_of
from pipeline.orchestration.tune.search import default_space, tune

PRODUCERS = ("soc", "mutr", "referformer", "sgmg")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def make_run(work: Path, videos: int) -> tuple[list[str], dict[str, float], dict[str, float]]:
    """The run's overrides, mean seconds per (node, video) and mean score seconds per video."""
    from pipeline.core.data import write_synthetic_benchmark
    from tests.pipeline.flow_fixtures import write_predictions

    data = work / "synth"
    write_synthetic_benchmark(data, seed=0, videos=videos, splits=("valid",))
    overrides = [
        "recipe=demo",
        "dataset=synth",
        f"dataset.root={data}",
        "dataset.synthetic.generate=false",
        "dataset.split=valid",
        f"runtime.output_root={work / 'outputs'}",
        "runtime.progress=false",
    ]
    for i, name in enumerate(PRODUCERS):
        pred = work / "predictions" / name
        write_predictions(data, "valid", pred, seed=100 + i)
        overrides += [
            f"producer@producers.{name}=import",
            f"producers.{name}.predictions={pred}",
            f"producers.{name}.scores={pred / 'scores.json'}",
        ]
    plan = prepare_run(compose_config(overrides), nodes=["v1"], run_name="bench")
    seconds: dict[str, list[float]] = defaultdict(list)
    scoring: list[float] = []
    for job in plan.jobs:
        for video in plan.todo[job.name]:
            start = time.perf_counter()
            run_node_video(job, video)
            seconds[job.name].append(time.perf_counter() - start)
            start = time.perf_counter()
            fresh_scores(plan, job, video)
            scoring.append(time.perf_counter() - start)
    means = {name: sum(s) / len(s) for name, s in seconds.items()}
    return overrides, means, {"score": sum(scoring) / len(scoring)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--max-sources", type=int, default=4)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lsvos_tune_bench_"))
    shutil.rmtree(work, ignore_errors=True)
    print(f"load before setup {loadavg()}")
    overrides, node_seconds, score_seconds = make_run(work, args.videos)
    print(
        "per (node, video): "
        + ", ".join(f"{n} {1000 * s:.0f} ms" for n, s in node_seconds.items())
        + f"; score per (node, video) {1000 * score_seconds['score']:.0f} ms"
    )
    load_before = loadavg()
    start = time.perf_counter()
    cpu = time.process_time()
    evaluator = Evaluator(nodes_of(compose_config(overrides)))
    space = default_space(evaluator, max_sources=args.max_sources, modes=("hard",))
    result = tune(evaluator, space, args.folds, seed=0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    load_after = loadavg()
    videos = len(evaluator.run.videos)
    candidates = evaluator.scored_specs()
    per_eval = evaluator.seconds_voting / evaluator.evaluations
    scratch = 0.0
    for spec in candidates:
        producers = evaluator.run.recipe.ancestors(spec.sources) & set(PRODUCERS)
        per_video = sum(node_seconds[p] for p in producers)
        per_video += node_seconds["v1"] * (1 + ("v1" in spec.sources))  # its vote (+ v1's)
        per_video += score_seconds["score"]
        scratch += per_video * videos
    print(
        f"search: {result.final.method}, {len(candidates)} distinct candidates, "
        f"{evaluator.evaluations} (candidate, video) votes, {args.folds} folds, {videos} videos"
    )
    print(
        f"  wall {wall:.1f} s, CPU {cpu:.1f} s (track and ground-truth reads "
        f"{evaluator.seconds_reading:.2f} s); {1000 * per_eval:.1f} ms per (candidate, video) "
        f"vote + score; {1000 * wall / len(candidates):.0f} ms per candidate, all folds; "
        f"{evaluator.expressions_reused} of "
        f"{evaluator.expressions_reused + evaluator.expressions_scored} fused expressions "
        "found scored already (the same masks)"
    )
    print(
        f"  each candidate run as a recipe from scratch (estimate): {scratch:.0f} s = "
        f"{scratch / wall:.1f}x the search's wall time"
    )
    print(f"  tuned CV J&F {100 * result.cv.JF:.1f}; load {load_before} before, {load_after} after")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
