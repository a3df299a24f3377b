"""The recipe graph as a run report sees it: nodes in graph order, their inputs, depths, and
each stage's output node and the input it is judged against.

Read from ``report.json`` (``nodes`` in graph order, each with ``inputs`` and
``key_frames_from``); runs written before those fields existed fall back to the recipe in the
run's ``config.json`` and are put in topological order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ReportNode:
    """One node of the run: ``key_frames_from`` is the node whose mask set holds its key
    frames (a propagation's key-frame node; the node itself otherwise)."""

    name: str
    kind: str
    stage: str
    inputs: tuple[str, ...]
    key_frames_from: str
    dir: str


@dataclass(frozen=True)
class StageComparison:
    """A stage judged by its output node against one of that node's inputs (``baseline``;
    None where the output reads no scored input, e.g. a stage of producers only)."""

    stage: str
    output: str
    baseline: str | None


class ReportGraph:
    """The run's nodes in graph order (inputs before the nodes that read them)."""

    def __init__(self, nodes: list[ReportNode]) -> None:
        self.nodes = _topological(nodes)
        self.by_name = {n.name: n for n in self.nodes}

    @classmethod
    def from_report(cls, report: dict[str, Any], run_dir: str | Path) -> ReportGraph:
        """The graph of a parsed ``report.json`` (``config.json`` beside it for old runs)."""
        raw = report["nodes"]
        recipe_nodes: dict[str, Any] = {}
        if any("inputs" not in info for info in raw.values()):
            config = Path(run_dir) / "config.json"
            if config.is_file():
                recipe_nodes = json.loads(config.read_text()).get("recipe", {}).get("nodes", {})
        nodes = []
        legacy = bool(recipe_nodes)
        for name, info in raw.items():
            if "inputs" in info:
                inputs = tuple(info["inputs"])
                key_from = info.get("key_frames_from") or name
            else:
                inputs, key_from = recipe_inputs(name, recipe_nodes.get(name, {}))
            inputs = tuple(i for i in inputs if i in raw)  # a partial run's selection
            nodes.append(
                ReportNode(name, info["kind"], info["stage"], inputs, key_from, info["dir"])
            )
        graph = cls(nodes)
        if legacy:  # an old report.json lists nodes by name: order them by depth, then name
            depths = graph.depths()
            graph = cls(sorted(graph.nodes, key=lambda n: (depths[n.name], n.name)))
        return graph

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def stages(self) -> list[str]:
        """Stages in the graph order of their output nodes."""
        stages = list(dict.fromkeys(n.stage for n in self.nodes))
        return sorted(stages, key=lambda s: self.names.index(self.stage_output(s)))

    def stage_nodes(self, stage: str) -> list[ReportNode]:
        return [n for n in self.nodes if n.stage == stage]

    def depths(self) -> dict[str, int]:
        """0 for a node without inputs, else one more than its deepest input."""
        depth: dict[str, int] = {}
        for node in self.nodes:  # inputs come first
            depth[node.name] = 1 + max((depth[i] for i in node.inputs), default=-1)
        return depth

    def readers(self, name: str) -> list[str]:
        """The nodes that read ``name``."""
        return [n.name for n in self.nodes if name in n.inputs]

    def ancestors(self, name: str) -> set[str]:
        """Every node ``name`` depends on (not itself)."""
        todo, seen = list(self.by_name[name].inputs), set()
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(self.by_name[node].inputs)
        return seen

    def stage_output(self, stage: str) -> str:
        """The node that is the stage's result: of the stage's nodes no other node of the stage
        reads, the one a later node reads (not a computed, unused one), built from the most of
        the stage's nodes (a propagated vote over a single model's propagation), the last in
        graph order on ties."""
        members = self.stage_nodes(stage)
        inside = {m.name for m in members}
        sinks = [m.name for m in members if not inside.intersection(self.readers(m.name))]

        def rank(name: str) -> tuple[bool, int, int]:
            used = bool(self.readers(name))
            return used, len(inside & self.ancestors(name)), self.names.index(name)

        return max(sinks, key=rank)

    def comparison(self, stage: str, jf: dict[str, float]) -> StageComparison:
        """The stage's output against what it started from: a propagation's source; the
        best-scoring input (``jf``: J&F per node) of a vote; nothing for a producer."""
        output = self.by_name[self.stage_output(stage)]
        scored = [i for i in output.inputs if i in jf]
        if not scored or output.kind not in ("propagate", "vote"):
            return StageComparison(stage, output.name, None)
        if output.kind == "propagate":
            source = output.inputs[0]
            return StageComparison(stage, output.name, source if source in jf else None)
        best = max(scored, key=lambda i: (jf[i], -scored.index(i)))
        return StageComparison(stage, output.name, best)

    def shown_nodes(self, stage: str) -> list[str]:
        """The nodes a stage's figures show: the stage's nodes and their inputs, graph order."""
        wanted = {n.name for n in self.stage_nodes(stage)}
        for node in self.stage_nodes(stage):
            wanted.update(node.inputs)
        return [n for n in self.names if n in wanted]


def recipe_inputs(name: str, node: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """``(inputs, key_frames_from)`` of a node from its recipe entry in ``config.json``."""
    kind = node.get("kind")
    if kind == "vote":
        return tuple(node.get("sources") or ()), name
    if kind == "propagate":
        source, key = node["source"], node.get("keyframe_from")
        inputs = (source,) if key in (None, source) else (source, key)
        return inputs, key or source
    return (), name


def _topological(nodes: list[ReportNode]) -> list[ReportNode]:
    """Inputs before readers; otherwise the given order (already graph order in new runs)."""
    by_name = {n.name: n for n in nodes}
    done: dict[str, ReportNode] = {}

    def visit(node: ReportNode, path: tuple[str, ...]) -> None:
        if node.name in done or node.name in path:
            return
        for name in node.inputs:
            visit(by_name[name], (*path, node.name))
        done[node.name] = node

    for node in nodes:
        visit(node, ())
    return list(done.values())
