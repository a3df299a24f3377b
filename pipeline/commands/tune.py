"""``lsvos tune``: search a vote over a finished run's cached nodes by cross-validated J&F and
write the best as a recipe (:mod:`pipeline.orchestration.tune`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.orchestration.tune.run_nodes import RunNodes

NAME = "tune"
HELP = "search a recipe's vote on a labelled run's cached masks (k-fold CV) and write it"
DEFAULT_OUT = Path("configs/recipe/tuned.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="+",
        metavar="RUN_DIR_OR_OVERRIDES",
        help="a finished run's folder (outputs/runs/<run>), or the Hydra overrides it ran with",
    )
    parser.add_argument("--folds", type=int, default=3, metavar="K", help="folds of videos (3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds (0)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"recipe to write ({DEFAULT_OUT})"
    )
    parser.add_argument(
        "--sources", nargs="+", default=None, metavar="NODE", help="nodes a vote may read (all)"
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["hard", "soft"],
        choices=("hard", "soft"),
        help="vote modes to search (soft only over sources it can be scored on)",
    )
    parser.add_argument("--max-sources", type=int, default=4, help="largest subset (4)")
    parser.add_argument("--beam", type=int, default=4, help="subsets kept per size (4)")
    parser.add_argument(
        "--exhaustive-up-to",
        type=int,
        default=6,
        metavar="N",
        help="try every subset when there are at most N sources (6), else a beam search",
    )
    parser.add_argument("--top", type=int, default=10, help="candidates shown (10)")


def run(args: argparse.Namespace) -> int:
    from pipeline.orchestration.config import CONFIG_DIR
    from pipeline.orchestration.tune.evaluate import Evaluator
    from pipeline.orchestration.tune.keyframes import rank_key_frames
    from pipeline.orchestration.tune.recipe_file import tuned_recipe, write_recipe
    from pipeline.orchestration.tune.run_nodes import load_run
    from pipeline.orchestration.tune.search import default_space, tune
    from pipeline.orchestration.tune.table import (
        candidates_table,
        cross_validation_table,
        fold_choices,
        headline,
    )

    run_nodes = load_run(args.source)
    evaluator = Evaluator(run_nodes)
    space = default_space(
        evaluator,
        args.sources,
        modes=tuple(args.modes),
        max_sources=args.max_sources,
        beam=args.beam,
        exhaustive_up_to=args.exhaustive_up_to,
    )
    print(
        f"recipe {run_nodes.recipe.name} on {run_nodes.dataset.root} split "
        f"{run_nodes.dataset.split}: {len(run_nodes.videos)} videos; sources {list(space.sources)}"
        + (f"; soft-votable {sorted(space.soft_sources)}" if "soft" in space.modes else "")
        + (f"; not computed (skipped): {run_nodes.missing}" if run_nodes.missing else "")
    )
    start = time.perf_counter()
    result = tune(evaluator, space, args.folds, args.seed)
    seconds = time.perf_counter() - start
    per = 1000 * evaluator.seconds_voting / max(evaluator.evaluations, 1)
    print(
        f"search: {result.final.method} over subsets of up to {space.max_sources} sources, "
        f"{len(result.final.ranked)} candidates on the split, {args.folds} folds (seed "
        f"{args.seed}); {evaluator.evaluations} (candidate, video) votes in {seconds:.1f} s "
        f"({per:.1f} ms each, reading {evaluator.seconds_reading:.1f} s)\n"
    )
    print(candidates_table(evaluator, result, args.top) + "\n")
    print(fold_choices(result) + "\n")
    print(cross_validation_table(evaluator, result) + "\n")
    chosen = result.final.ranked[0]
    print(
        f"chosen on the whole split: {chosen.candidate.describe()}, J&F {100 * chosen.score.JF:.1f}"
    )
    key_frames = rank_key_frames(evaluator, chosen.candidate.spec, space, run_nodes.videos)
    written = key_frames[0].spec if key_frames else chosen.candidate.spec
    if key_frames:
        print("key frames for a downstream propagation (J&F of the vote on its key frames):")
        for option in key_frames:
            print(f"  {100 * option.key_frame_jf:5.1f}  {option.describe()}")
    print(headline(result))
    out: Path = args.out
    name = out.stem
    data, node = tuned_recipe(
        run_nodes,
        written,
        name=name,
        description=f"lsvos tune of recipe {run_nodes.recipe.name}: {chosen.candidate.describe()}",
    )
    write_recipe(
        out,
        data,
        [
            f"base recipe {run_nodes.recipe.name}, split {run_nodes.dataset.split} of "
            f"{run_nodes.dataset.root} ({len(run_nodes.videos)} videos)",
            headline(result) + f" ({args.folds} folds, seed {args.seed})",
            f"chosen vote (node {node}): {chosen.candidate.describe()}, "
            f"J&F {100 * chosen.score.JF:.1f} on the split",
        ],
    )
    print(f"wrote {out} (submission node {node})")
    stale = [
        n for n in data["recipe"]["nodes"] if n in run_nodes.nodes and run_nodes.nodes[n].recorded
    ]
    if stale:
        print(
            f"note: {stale} were computed by older code (their cache keys changed since the run): "
            "`lsvos run` recomputes them, so its scores may differ from these"
        )
    rerun = " ".join(_rerun_overrides(run_nodes))
    if out.resolve().parent == (CONFIG_DIR / "recipe").resolve():
        print(f"re-run: lsvos run recipe={name} {rerun}")
    else:
        print(f"re-run: copy it into {CONFIG_DIR / 'recipe'}, then lsvos run recipe={name} {rerun}")
    return 0


def _rerun_overrides(run_nodes: RunNodes) -> list[str]:
    """The dataset and outputs overrides that run the written recipe on the same split."""
    dataset = run_nodes.dataset
    out = [
        f"dataset.format={dataset.format}",
        f"dataset.root={dataset.root}",
        f"dataset.split={dataset.split}",
        f"runtime.output_root={Path(run_nodes.cfg.runtime.output_root).resolve()}",
    ]
    if dataset.videos:
        out.append(f"dataset.videos=[{','.join(dataset.videos)}]")
    return out
