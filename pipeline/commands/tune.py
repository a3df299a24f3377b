"""``lsvos tune``: search a vote over a finished run's cached nodes by cross-validated J&F and
write the best as a recipe (:mod:`pipeline.orchestration.tune`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.core.vote import VoteSpec
    from pipeline.orchestration.config import NodeConfig
    from pipeline.orchestration.tune.evaluate import Evaluator
    from pipeline.orchestration.tune.run_nodes import RunNodes
    from pipeline.orchestration.tune.search import TuneResult

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
    parser.add_argument(
        "--top-sources",
        type=int,
        default=None,
        metavar="N",
        help="vote only the N sources with the best J&F on the videos each choice is made on "
        "(chosen again in each fold; default all)",
    )
    parser.add_argument("--top", type=int, default=10, help="candidates shown (10)")
    parser.add_argument(
        "--propagate",
        nargs="*",
        default=None,
        metavar="NODE",
        help="add propagations of these nodes (none named: every producer) by each engine to the "
        "base recipe, run it with `lsvos run` (cached like any node), and search over them too",
    )
    parser.add_argument(
        "--engines",
        nargs="+",
        default=None,
        metavar="ENGINE",
        help="engines that propagate (default: those of the base recipe's propagate nodes)",
    )
    parser.add_argument(
        "--stages",
        type=int,
        default=1,
        choices=(1, 2),
        help="2: propagate the first search's chosen vote by each engine and search again (1)",
    )
    parser.add_argument(
        "--score-on",
        default=None,
        metavar="SPLIT",
        help="then run the written recipe and the base recipe on this labelled split with "
        "`lsvos run` and print the tuned recipe, the best single producer and the base recipe",
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.orchestration.config import CONFIG_DIR
    from pipeline.orchestration.tune.recipe_file import tuned_recipe, write_recipe
    from pipeline.orchestration.tune.run_nodes import load_run
    from pipeline.orchestration.tune.table import headline

    augmenting = args.propagate is not None or args.stages == 2 or args.score_on is not None
    if augmenting and len(args.source) == 1 and Path(args.source[0]).is_dir():
        from pipeline.core.errors import UserError

        raise UserError(
            "--propagate, --stages 2 and --score-on run recipes: give the base run's Hydra "
            "overrides (recipe=... dataset=...), not its folder"
        )
    if args.propagate is not None or args.stages == 2:
        run_nodes, overrides = _propagated_run(args, stage=1, overrides=list(args.source))
    else:
        run_nodes, overrides = load_run(args.source), list(args.source)
    evaluator, result, written = _search(run_nodes, args)
    if args.stages == 2:
        run_nodes, overrides = _propagated_run(args, stage=2, overrides=overrides, vote=written)
        evaluator, result, written = _search(run_nodes, args)
    chosen = result.final.ranked[0]
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
    elif out.resolve().parent.name == "recipe":
        search_path = f"hydra.searchpath=[file://{out.resolve().parent.parent}]"
        print(f"re-run: lsvos run recipe={name} {search_path} {rerun}")
    else:
        print(f"re-run: copy it into {CONFIG_DIR / 'recipe'}, then lsvos run recipe={name} {rerun}")
    if args.score_on is not None:
        _score_on(args.score_on, overrides, run_nodes, evaluator, out, node)
    return 0


def _search(
    run_nodes: RunNodes, args: argparse.Namespace
) -> tuple[Evaluator, TuneResult, VoteSpec]:
    """Search the run's nodes, print the report; the evaluator, the result and the chosen vote
    with its best key-frame choice."""
    from pipeline.orchestration.tune.evaluate import Evaluator
    from pipeline.orchestration.tune.keyframes import rank_key_frames
    from pipeline.orchestration.tune.search import default_space, tune
    from pipeline.orchestration.tune.table import (
        candidates_table,
        cross_validation_table,
        fold_choices,
        headline,
    )

    evaluator = Evaluator(run_nodes)
    space = default_space(
        evaluator,
        args.sources,
        modes=tuple(args.modes),
        max_sources=args.max_sources,
        beam=args.beam,
        exhaustive_up_to=args.exhaustive_up_to,
        top_sources=args.top_sources,
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
    if key_frames:
        print("key frames for a downstream propagation (J&F of the vote on its key frames):")
        for option in key_frames:
            print(f"  {100 * option.key_frame_jf:5.1f}  {option.describe()}")
    print(headline(result))
    return evaluator, result, key_frames[0].spec if key_frames else chosen.candidate.spec


def _propagated_run(
    args: argparse.Namespace, stage: int, overrides: list[str], vote: VoteSpec | None = None
) -> tuple[RunNodes, list[str]]:
    """Add this stage's propagations to the recipe of ``overrides``, run it with ``lsvos run``
    (cached nodes are not recomputed) and load it; the run's nodes and its overrides.

    Stage 1 propagates ``--propagate``'s nodes (default every producer); stage 2 adds ``vote``
    as node ``tv1`` and propagates it."""
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.recipe import Recipe
    from pipeline.orchestration.tune.augment import (
        base_engines,
        base_producers,
        node_overrides,
        propagations,
        run_recipe,
        stage_vote,
    )
    from pipeline.orchestration.tune.run_nodes import load_run_dir

    cfg = compose_config(overrides)
    recipe = Recipe.from_config(cfg)
    engines = args.engines or base_engines(recipe)
    if stage == 1:
        sources = args.propagate or base_producers(recipe)
        added: dict[str, NodeConfig] = dict(propagations(recipe, sources, engines))
    else:
        assert vote is not None
        name, node = stage_vote(vote, stage - 1)
        added = {name: node}
        cfg.recipe.nodes[name] = node
        added.update(propagations(Recipe.from_config(cfg), [name], engines))
    augmented = [*overrides, *node_overrides(added)]
    print(f"stage {stage}: adding {', '.join(added)} to recipe {recipe.name}")
    output_root = Path(cfg.runtime.output_root).resolve()
    run_name = f"tune-{recipe.name}-{cfg.dataset.split}-stage{stage}"
    record = run_recipe(augmented, run_name, output_root)
    new = {n: record.computed.get(n, 0) for n in added}
    print(
        f"stage {stage} run {record.run_dir}: {record.computed_tasks} (node, video) tasks "
        f"computed, {sum(record.cached.values())} cached; of the added nodes computed: {new}\n"
    )
    return load_run_dir(record.run_dir), augmented  # its report's folders if keys moved since


def _score_on(
    split: str,
    overrides: list[str],
    run_nodes: RunNodes,
    evaluator: Evaluator,
    recipe_path: Path,
    tuned_node: str,
) -> None:
    """Run the written recipe and the base recipe on ``split``; print the three numbers."""
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.tune.held_out import score_held_out

    producers = [n for n, node in run_nodes.nodes.items() if node.is_producer]
    best = max(producers, key=lambda p: evaluator.node_score(p, run_nodes.videos).JF)
    base_overrides = [o for o in overrides if not o.startswith("+recipe.nodes.")]
    cfg = compose_config(base_overrides)
    held_out = score_held_out(
        base_overrides,
        cfg.recipe.submission,
        recipe_path,
        tuned_node,
        split,
        best,
        Path(cfg.runtime.output_root).resolve(),
        f"tune-{cfg.recipe.name}",
    )
    print(f"\nheld out on split {split} (nothing chosen there):")
    print(held_out.table(tuned_node))
    print(
        f"J&F on {split}: tuned {100 * held_out.tuned:.1f}  |  best single producer "
        f"{held_out.best_producer} {100 * held_out.best_producer_jf:.1f}  |  base submission "
        f"{held_out.base_submission} {100 * held_out.base:.1f}"
    )


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
