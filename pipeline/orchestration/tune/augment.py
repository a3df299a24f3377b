"""Propagations inside the search: the base recipe plus propagate nodes, run by ``lsvos run``.

A propagation is a node like any other: computed once per (source, engine) by the flow and
cached under its key, so a second search (or the written recipe) finds it done. The search
composes an *augmented recipe*: the base recipe's nodes plus, for each source asked for and
each engine, ``tp_<source>_<engine>`` (a :class:`~pipeline.orchestration.config.PropagateNode`
from that source's key frames, stage ``tune``). A second stage adds the chosen vote of the
first search as the vote node ``tv1`` and its propagations ``tp_tv1_<engine>``.

The augmented recipe is given to ``lsvos run`` as Hydra overrides on the base's
(``+recipe.nodes.NAME={...}``), so nothing is written into ``configs/``; the run is a
subprocess (``python -m pipeline.cli run ...``) whose report the search reads back
(:func:`run_recipe`).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.core.io import read_json
from pipeline.core.vote import VoteSpec
from pipeline.orchestration.config import (
    NodeConfig,
    PropagateNode,
    VoteNode,
)
from pipeline.orchestration.recipe import Recipe
from pipeline.orchestration.tune.recipe_file import compact_node, vote_node

PROPAGATION_STAGE = "tune"
STAGE_VOTE = "tv"  # the chosen vote of stage s is node tv<s>


def propagation_name(source: str, engine: str) -> str:
    """The augmented recipe's name of ``source`` propagated by ``engine``."""
    return f"tp_{source}_{engine}"


def base_engines(recipe: Recipe) -> list[str]:
    """The engines the base recipe's propagate nodes use, in graph order."""
    found: dict[str, None] = {}
    for node in recipe.nodes:
        if isinstance(node.config, PropagateNode):
            found.setdefault(node.config.engine, None)
    return list(found)


def base_producers(recipe: Recipe) -> list[str]:
    """The base recipe's produce (and import) nodes, in graph order."""
    return [node.name for node in recipe.nodes if not node.config.inputs]


def propagations(
    recipe: Recipe, sources: Sequence[str], engines: Sequence[str]
) -> dict[str, PropagateNode]:
    """``tp_<source>_<engine>`` for every pair, in source then engine order.

    Raises :class:`UserError` for a source that is not a node of the recipe (or of the
    nodes added before it), an engine no propagate node of the recipe uses (its settings come
    from the base's ``engines``), or a name the recipe already takes.
    """
    known = base_engines(recipe)
    unknown = [e for e in engines if e not in known]
    if unknown:
        raise UserError(
            f"engines {unknown} are not used by recipe {recipe.name!r}; it propagates with {known}"
        )
    out: dict[str, PropagateNode] = {}
    for source in sources:
        for engine in engines:
            name = propagation_name(source, engine)
            if name in recipe.by_name:
                raise UserError(f"recipe {recipe.name!r} already has a node named {name!r}")
            out[name] = PropagateNode(source=source, engine=engine, stage=PROPAGATION_STAGE)
    return out


def stage_vote(spec: VoteSpec, stage: int) -> tuple[str, VoteNode]:
    """The node ``tv<stage>`` voting ``spec`` (the chosen vote a later stage propagates)."""
    return f"{STAGE_VOTE}{stage}", vote_node(spec, stage=PROPAGATION_STAGE)


def node_overrides(nodes: Mapping[str, NodeConfig]) -> list[str]:
    """Hydra overrides adding ``nodes`` to a recipe: ``+recipe.nodes.NAME={key: value, ...}``
    with every field off its default (values are names and numbers: no quoting needed)."""
    out = []
    for name, node in nodes.items():
        fields = compact_node(node)
        out.append(f"+recipe.nodes.{name}={{{', '.join(_item(k, v) for k, v in fields.items())}}}")
    return out


def _item(key: str, value: Any) -> str:
    if isinstance(value, list):
        return f"{key}: [{', '.join(str(v) for v in value)}]"
    if value is None:
        return f"{key}: null"
    if isinstance(value, bool):
        return f"{key}: {'true' if value else 'false'}"
    return f"{key}: {value}"


@dataclass(frozen=True)
class RunRecord:
    """What a finished ``lsvos run`` reports: its folder, the J&F of every scored node
    (fractions), and the (node, video) tasks it computed and found cached."""

    run_dir: Path
    scores: dict[str, float]
    computed: dict[str, int]
    cached: dict[str, int]

    @property
    def computed_tasks(self) -> int:
        return sum(self.computed.values())


def read_run(run_dir: Path) -> RunRecord:
    """The record of the run in ``run_dir`` (its ``report.json``)."""
    path = run_dir / "report.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: no report.json (the run did not finish)")
    report = read_json(path)
    return RunRecord(
        run_dir,
        {name: float(s["JF"]) for name, s in report.get("scores", {}).items()},
        {name: int(n) for name, n in report.get("computed", {}).items()},
        {name: int(n) for name, n in report.get("cached", {}).items()},
    )


def run_recipe(overrides: Sequence[str], run_name: str, output_root: Path) -> RunRecord:
    """Run ``lsvos run <overrides>`` (a subprocess, output passed through) as ``run_name``
    and read its report. Raises :class:`UserError` when the run fails."""
    argv = [*overrides, f"runtime.run_name={run_name}"]
    print("$ lsvos run " + " ".join(argv), flush=True)
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", *argv], check=False)
    if proc.returncode != 0:
        raise UserError(f"lsvos run {run_name} failed (exit status {proc.returncode})")
    return read_run(output_root / "runs" / run_name)
