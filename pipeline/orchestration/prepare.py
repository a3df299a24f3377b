"""Everything a run does before its first task: check, generate, create, record.

:func:`prepare_run` validates the recipe, runs every preflight check (paths, weights, model
families and variants: all problems at once) on the nodes the run will compute (a node cached
for its current key is not checked, :func:`check_run`), generates the synthetic benchmark on
first use, plans (:func:`pipeline.orchestration.plan.make_plan`, pure), then creates every
node's mask set and the run folder with its ``config.json``. These are the run's only side
effects before the graph runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.io import atomic_write_text
from pipeline.core.masks import MaskSet
from pipeline.orchestration.cache import FileIdentities
from pipeline.orchestration.config import (
    DatasetConfig,
    LsvosConfig,
    ProduceNode,
    PropagateNode,
    plain_data,
)
from pipeline.orchestration.jobs import RunPlan
from pipeline.orchestration.plan import make_plan
from pipeline.orchestration.recipe import Node, Recipe
from pipeline.orchestration.splits import dataset_problems, open_split


def prepare_run(
    cfg: LsvosConfig,
    *,
    nodes: Iterable[str] | None = None,
    stages: Iterable[str] | None = None,
    refresh: bool = False,
    refresh_nodes: Iterable[str] | None = None,
    run_name: str | None = None,
) -> RunPlan:
    """Validate, prepare and plan a run of ``cfg``; raises :class:`UserError` listing every
    problem found before any work."""
    recipe = Recipe.from_config(cfg)
    selected = check_run(
        cfg, nodes=nodes, stages=stages, refresh=refresh, refresh_nodes=refresh_nodes
    )
    dataset = prepare_dataset(cfg.dataset, cfg.runtime.output_root)
    split = open_split(dataset)
    files = file_identities(cfg.runtime.output_root)
    name = run_name or cfg.runtime.run_name or f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    plan = make_plan(
        cfg,
        recipe,
        selected,
        dataset,
        split,
        files,
        run_name=name,
        refresh=refresh,
        refresh_nodes=refresh_nodes,
    )
    files.save()
    for job in plan.jobs:  # up front, so concurrent tasks never race to create one
        MaskSet(job.out_dir, "rle")
    run_dir = Path(plan.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        run_dir / "config.json", json.dumps(plain_data(cfg), indent=1, sort_keys=True)
    )
    return plan


def check_run(
    cfg: LsvosConfig,
    *,
    nodes: Iterable[str] | None = None,
    stages: Iterable[str] | None = None,
    refresh: bool = False,
    refresh_nodes: Iterable[str] | None = None,
) -> list[Node]:
    """The selected nodes of ``cfg``'s recipe; raises :class:`UserError` listing every problem
    :func:`preflight` finds. ``lsvos run`` calls it before it starts a server, the flow again.

    Only the nodes the run will compute are checked: a node whose every output is cached for
    its current key does not run (a changed checkpoint, tokenizer or predictions file changes
    the key), and checking a producer loads its model library and tokenizer, which was most of
    a re-run's fixed cost (bench/README.md, "Re-run fixed cost"). Where the dataset is not
    ready yet (the synthetic benchmark to generate, a missing root), every node is checked.
    """
    selected = Recipe.from_config(cfg).select(nodes, stages)
    to_check = _nodes_to_compute(cfg, selected, refresh, refresh_nodes)
    problems = preflight(cfg, to_check)
    if problems:
        raise UserError("cannot start the run:\n  - " + "\n  - ".join(problems))
    return selected


def _nodes_to_compute(
    cfg: LsvosConfig,
    selected: list[Node],
    refresh: bool,
    refresh_nodes: Iterable[str] | None,
) -> list[Node]:
    """The nodes of ``selected`` with a (node, video) left to compute, from the pure plan; all
    of them where the dataset cannot be planned on without generating or fixing it first."""
    dataset = _ready_dataset(cfg.dataset)
    if dataset is None:
        return selected
    recipe = Recipe.from_config(cfg)
    files = file_identities(cfg.runtime.output_root)
    plan = make_plan(
        cfg,
        recipe,
        selected,
        dataset,
        open_split(dataset),
        files,
        run_name="check",
        refresh=refresh,
        refresh_nodes=refresh_nodes,
    )
    return [node for node in selected if plan.todo[node.name]]


def _ready_dataset(dataset: DatasetConfig) -> DatasetConfig | None:
    """``dataset`` with its root resolved when its split can be read as it is (no benchmark to
    generate), else None."""
    if dataset_problems(dataset):
        return None
    root = Path(dataset.root).resolve()
    if dataset.synthetic and dataset.synthetic.generate and not _synthetic_complete(dataset, root):
        return None
    return replace(dataset, root=str(root))


@functools.cache
def _file_identities(output_root: Path) -> FileIdentities:
    return FileIdentities(output_root)


def file_identities(output_root: str | Path) -> FileIdentities:
    """The process's content identities under ``output_root``: the check and the plan of a run
    share one memo, so a new checkpoint is hashed once."""
    return _file_identities(Path(output_root).resolve())


def preflight(cfg: LsvosConfig, selected: Sequence[Node]) -> list[str]:
    """Every problem that would stop the run, found before any work (paths named)."""
    from pipeline.adapters.engines import engine_problems
    from pipeline.adapters.producers import producer_problems

    problems: list[str] = dataset_problems(cfg.dataset)
    for node in selected:
        if isinstance(node.config, ProduceNode):
            name = node.config.producer
            problems += producer_problems(f"producers.{name}", cfg.producers[name])
        elif isinstance(node.config, PropagateNode):
            name = node.config.engine
            problems += engine_problems(f"engines.{name}", cfg.engines[name])
    return sorted(set(problems), key=problems.index)


def prepare_dataset(dataset: DatasetConfig, output_root: str | Path) -> DatasetConfig:
    """The dataset with its root resolved; the synthetic benchmark generated there on first use.

    Generation happens only under ``output_root`` (the default root) or into a folder that
    already exists: a mistyped ``dataset.root`` is refused, never turned into a new dataset. Runs
    started together on a fresh outputs folder generate it once, under a file lock beside it.
    """
    root = Path(dataset.root).resolve()
    synthetic = dataset.synthetic
    if synthetic and synthetic.generate and not _synthetic_complete(dataset, root):
        inside = root.is_relative_to(Path(output_root).resolve())
        if not inside and not root.is_dir():
            raise UserError(
                f"dataset root not found: {root}; the synthetic benchmark is generated on first "
                f"use only under runtime.output_root or into an existing folder (write it with "
                f"`lsvos data synth --out {root}`, or fix dataset.root)"
            )
        with _generation_lock(root):
            if not _synthetic_complete(dataset, root):  # another run may have finished it
                _write_synthetic(dataset, root)
    if not root.is_dir():
        raise UserError(f"dataset root not found: {root} (set dataset.root=...)")
    return replace(dataset, root=str(root))


def _synthetic_complete(dataset: DatasetConfig, root: Path) -> bool:
    """Every split's expression meta is written (each generator writes the last split's last):
    the Ref-YouTube-VOS layout's ``meta_expressions/<split>/``, MeViS's ``<split>/``."""
    if str(dataset.format) == "mevis":
        from pipeline.core.data.synth_mevis import SPLITS as MEVIS_SPLITS

        return all((root / s / "meta_expressions.json").is_file() for s in MEVIS_SPLITS)
    from pipeline.core.data.synth import SPLITS

    return all((root / "meta_expressions" / s / "meta_expressions.json").is_file() for s in SPLITS)


def _write_synthetic(dataset: DatasetConfig, root: Path) -> None:
    """The synthetic benchmark in ``dataset``'s layout (``dataset.synthetic``'s seed, videos)."""
    synthetic = dataset.synthetic
    assert synthetic is not None
    if str(dataset.format) == "mevis":
        from pipeline.core.data.synth_mevis import write_synthetic_mevis_benchmark

        write_synthetic_mevis_benchmark(root, seed=synthetic.seed, videos=synthetic.videos)
    elif str(dataset.format) == "ytvos":
        from pipeline.core.data import write_synthetic_benchmark

        write_synthetic_benchmark(root, seed=synthetic.seed, videos=synthetic.videos)
    else:
        raise UserError(
            f"dataset.synthetic: no synthetic benchmark in the {dataset.format} layout "
            "(ytvos or mevis)"
        )


@contextlib.contextmanager
def _generation_lock(root: Path) -> Iterator[None]:
    """An exclusive lock on ``<parent>/.<name>.lock``, held while the benchmark is written."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
