"""A finished run's nodes and the mask-set folders that hold their outputs.

A run is named by its folder (``outputs/runs/<run>``, whose ``config.json`` records the typed
configuration it ran) or by the Hydra overrides that composed it. Either way the folders come
from the pure plan (:func:`pipeline.orchestration.plan.make_plan`) of that configuration on its
split: a node whose every video is complete under its current cache key is a source the search
can vote. Where the code changed since the run (so a key moved), the folder the run recorded in
its ``report.json`` is taken instead when it is complete. Nodes with neither are listed as
missing, never voted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.core.errors import UserError
from pipeline.core.io import read_json
from pipeline.core.masks import MaskSet
from pipeline.orchestration.cache import FileIdentities
from pipeline.orchestration.config import (
    DatasetConfig,
    LsvosConfig,
    compose_config,
    typed_node,
)
from pipeline.orchestration.plan import make_plan
from pipeline.orchestration.recipe import Recipe
from pipeline.orchestration.splits import open_split


@dataclass(frozen=True)
class RunNode:
    """One node of the run whose mask set is complete on every video of the split.

    ``kind``: the job kind (``produce``, ``import``, ``vote``, ``propagate``); ``out_dir``: its
    mask-set folder; ``recorded``: the folder came from the run's ``report.json`` (the node's
    key has changed since), not from the current plan.
    """

    name: str
    kind: str
    out_dir: str
    recorded: bool = False

    @property
    def is_producer(self) -> bool:
        return self.kind in ("produce", "import")


@dataclass
class RunNodes:
    """What the search reads of a run: its configuration, recipe, split and complete nodes.

    ``nodes``: the complete nodes in the recipe's topological order; ``missing``: the nodes
    that are not complete on every video (not voted); ``dataset``: the split, root resolved;
    ``videos``: the run's videos in split order.
    """

    cfg: LsvosConfig
    recipe: Recipe
    dataset: DatasetConfig
    videos: list[str]
    nodes: dict[str, RunNode]
    missing: list[str]
    run_dir: Path | None = None

    @property
    def submission(self) -> str | None:
        """The base recipe's submission node, when it is complete."""
        return self.recipe.submission if self.recipe.submission in self.nodes else None

    def vote_nodes(self) -> list[str]:
        """The complete vote nodes of the base recipe, in graph order."""
        return [name for name, node in self.nodes.items() if node.kind == "vote"]


def load_run(source: Sequence[str]) -> RunNodes:
    """The run named by ``source``: one run folder holding ``config.json``, or Hydra overrides."""
    if len(source) == 1 and Path(source[0]).is_dir():
        return load_run_dir(Path(source[0]))
    if any(Path(s).is_dir() for s in source):
        raise UserError(f"give one run folder or Hydra overrides, not both: {' '.join(source)}")
    return nodes_of(compose_config(list(source)))


def load_run_dir(run_dir: Path) -> RunNodes:
    """The run recorded in ``run_dir`` (``config.json``; ``report.json`` where present)."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise UserError(f"{run_dir} is not a run folder: no config.json (made by `lsvos run`)")
    recorded: dict[str, str] = {}
    report_path = run_dir / "report.json"
    if report_path.is_file():
        report = read_json(report_path)
        recorded = {name: str(n["dir"]) for name, n in report.get("nodes", {}).items()}
    return nodes_of(config_from_json(config_path), recorded=recorded, run_dir=run_dir)


def config_from_json(path: Path) -> LsvosConfig:
    """The typed configuration a run recorded (``config.json``: the plain data of its
    :class:`LsvosConfig`), validated against the schema again."""
    raw = read_json(path)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(LsvosConfig), raw)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise UserError(f"{path}: not a configuration of this version: {err}") from err
    assert isinstance(cfg, LsvosConfig)
    cfg.recipe.nodes = {
        name: typed_node(f"{path}: recipe.nodes.{name}", node)
        for name, node in cfg.recipe.nodes.items()
    }
    return cfg


def nodes_of(
    cfg: LsvosConfig, *, recorded: dict[str, str] | None = None, run_dir: Path | None = None
) -> RunNodes:
    """Every node of ``cfg``'s recipe that is complete on its split (pure: writes nothing).

    ``recorded``: node name -> folder from the run's report, used where the current plan's
    folder is incomplete. Raises :class:`UserError` when the split cannot be read or has no
    ground truth (the search scores against it).
    """
    recipe = Recipe.from_config(cfg)
    root = Path(cfg.dataset.root).resolve()
    if not root.is_dir():
        raise UserError(f"dataset root not found: {root} (run `lsvos run` on it first)")
    dataset = replace(cfg.dataset, root=str(root))
    split = open_split(dataset)
    if not split.has_ground_truth:
        raise UserError(
            f"the split {dataset.split!r} of {root} has no ground truth: a recipe is tuned on a "
            "labelled split"
        )
    files = FileIdentities(Path(cfg.runtime.output_root).resolve())  # read, never saved
    plan = make_plan(cfg, recipe, recipe.nodes, dataset, split, files, run_name="tune")
    nodes: dict[str, RunNode] = {}
    missing: list[str] = []
    for job in plan.jobs:
        if not plan.todo[job.name]:
            nodes[job.name] = RunNode(job.name, job.kind, job.out_dir)
            continue
        old = (recorded or {}).get(job.name)
        if old is not None and _complete(old, plan.videos):
            nodes[job.name] = RunNode(job.name, job.kind, old, recorded=True)
        else:
            missing.append(job.name)
    if not nodes:
        raise UserError(
            f"no node of recipe {recipe.name!r} is computed on {root} split {dataset.split!r}: "
            "run `lsvos run` with the same overrides first"
        )
    return RunNodes(cfg, recipe, dataset, plan.videos, nodes, missing, run_dir)


def _complete(out_dir: str, videos: Sequence[str]) -> bool:
    if not MaskSet.is_mask_set(out_dir):
        return False
    masks = MaskSet(out_dir)
    return all(masks.is_complete(v) for v in videos)
