"""A recipe: a directed acyclic graph of mask sets (produce, vote and propagate nodes).

Built from the typed configuration (:class:`~pipeline.orchestration.config.LsvosConfig`),
validated as a whole (every reference resolves, no cycle, each kind has what it needs), ordered
topologically in config order, and able to say which nodes a partial run needs. Field values
(types, enums, unknown keys) were checked at composition; this module checks the graph.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.core.errors import UserError
from pipeline.orchestration.config import (
    LsvosConfig,
    NodeConfig,
    ProduceNode,
    PropagateNode,
    VoteNode,
)
from pipeline.orchestration.nodes.vote import vote_spec


@dataclass(frozen=True)
class Node:
    """One node of the graph: its name and its typed configuration."""

    name: str
    config: NodeConfig

    @property
    def kind(self) -> str:
        return str(self.config.kind)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Nodes whose mask sets this node reads, in order (vote input 0 first)."""
        return self.config.inputs

    @property
    def stage(self) -> str:
        return self.config.stage


class Recipe:
    """The validated graph. ``nodes`` are in topological order (ties keep config order)."""

    def __init__(self, name: str, nodes: list[Node], submission: str, package_format: str):
        self.name = name
        self.nodes = nodes
        self.by_name = {n.name: n for n in nodes}
        self.submission = submission
        self.package_format = package_format

    @classmethod
    def from_config(cls, cfg: LsvosConfig) -> Recipe:
        """Validate the graph of a composed config against its producers and engines."""
        recipe = cfg.recipe
        if not recipe.nodes:
            raise UserError(f"recipe {recipe.name!r} has no nodes")
        nodes = [Node(name, _validated(name, node, cfg)) for name, node in recipe.nodes.items()]
        if recipe.submission not in recipe.nodes:
            raise UserError(
                f"recipe.submission {recipe.submission!r} is not a node; "
                f"nodes: {sorted(recipe.nodes)}"
            )
        layout = "mevis" if str(cfg.dataset.format) == "mevis" else "ytvos"
        if recipe.package_format is not None and str(recipe.package_format) != layout:
            raise UserError(
                f"recipe.package_format: {recipe.package_format} does not fit dataset.format "
                f"{cfg.dataset.format}, whose submissions are {layout} zips "
                f"(set recipe.package_format={layout}, or null for the dataset's own)"
            )
        return cls(recipe.name, _topological(nodes), recipe.submission, layout)

    def ancestors(self, names: Iterable[str]) -> set[str]:
        """``names`` and every node they depend on."""
        todo = list(names)
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(self.by_name[name].inputs)
        return seen

    def descendants(self, names: Iterable[str]) -> set[str]:
        """``names`` and every node that depends on them."""
        result = set(names)
        for node in self.nodes:  # topological order: inputs come first
            if any(i in result for i in node.inputs):
                result.add(node.name)
        return result

    def select(
        self, nodes: Iterable[str] | None = None, stages: Iterable[str] | None = None
    ) -> list[Node]:
        """The nodes to run for a selection (and their inputs), in order; all when both None."""
        wanted: set[str] = set()
        if nodes is None and stages is None:
            wanted = set(self.by_name)
        for name in nodes or ():
            if name not in self.by_name:
                raise UserError(f"unknown node {name!r}; nodes: {list(self.by_name)}")
            wanted.add(name)
        known_stages = {n.stage for n in self.nodes}
        for stage in stages or ():
            if stage not in known_stages:
                raise UserError(f"unknown stage {stage!r}; stages: {sorted(known_stages)}")
            wanted.update(n.name for n in self.nodes if n.stage == stage)
        needed = self.ancestors(wanted)
        return [n for n in self.nodes if n.name in needed]

    def soft_inputs(self) -> set[str]:
        """Nodes whose soft probabilities a vote reads (``VoteNode.probability_sources``) and
        that can keep them: producers, and soft votes (a propagation or a hard vote has only
        masks, so the flag would re-run it for nothing)."""
        wanted = {
            source
            for n in self.nodes
            if isinstance(n.config, VoteNode)
            for source in n.config.probability_sources
        }
        return {name for name in wanted if _keeps_probabilities(self.by_name[name].config)}


def _keeps_probabilities(node: NodeConfig) -> bool:
    """Whether a node's mask set can hold soft probabilities (a produce node, or a soft vote)."""
    return isinstance(node, ProduceNode) or (isinstance(node, VoteNode) and node.mode == "soft")


def _validated(name: str, node: NodeConfig, cfg: LsvosConfig) -> NodeConfig:
    where = f"recipe.nodes.{name}"
    all_nodes = cfg.recipe.nodes

    def need_node(key: str, value: str | None) -> None:
        if value not in all_nodes:
            raise UserError(f"{where}.{key}: {value!r} is not a node; nodes: {sorted(all_nodes)}")

    if isinstance(node, ProduceNode):
        if node.producer not in cfg.producers:
            raise UserError(
                f"{where}.producer: {node.producer!r} is not configured; "
                f"producers: {sorted(cfg.producers)}"
            )
    elif isinstance(node, VoteNode):
        sources = list(node.sources)
        if not sources:
            raise UserError(f"{where}.sources: a vote needs at least one source")
        if len(set(sources)) != len(sources):
            raise UserError(f"{where}.sources lists a node twice: {sources}")
        for source in sources:
            need_node("sources", source)
        if node.weights is not None and len(node.weights) != len(sources):
            raise UserError(
                f"{where}.weights: {len(node.weights)} weights for {len(sources)} sources"
            )
        if node.keyframe_from is not None and node.keyframe_from not in sources:
            raise UserError(
                f"{where}.keyframe_from: {node.keyframe_from!r} is not one of its sources"
            )
        try:  # thresholds, mode and key-frame rule, as the vote will read them
            vote_spec(node)
        except UserError as err:
            raise UserError(f"{where}: {err}") from err
    elif isinstance(node, PropagateNode):
        need_node("source", node.source)
        if node.keyframe_from is not None:
            need_node("keyframe_from", node.keyframe_from)
        if node.engine not in cfg.engines:
            raise UserError(
                f"{where}.engine: {node.engine!r} is not configured; engines: {sorted(cfg.engines)}"
            )
    return node


def _topological(nodes: list[Node]) -> list[Node]:
    by_name = {n.name: n for n in nodes}
    done: dict[str, Node] = {}
    visiting: list[str] = []

    def visit(node: Node) -> None:
        if node.name in done:
            return
        if node.name in visiting:
            cycle = [*visiting[visiting.index(node.name) :], node.name]
            raise UserError(f"recipe has a cycle: {' -> '.join(cycle)}")
        visiting.append(node.name)
        for name in node.inputs:
            visit(by_name[name])
        visiting.pop()
        done[node.name] = node

    for node in nodes:
        visit(node)
    return list(done.values())
