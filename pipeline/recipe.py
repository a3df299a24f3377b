"""A recipe: a directed acyclic graph of mask sets (produce, vote and propagate nodes).

Built from the composed config's ``recipe`` block, validated as a whole (every reference
resolves, no cycle, each kind has what it needs), ordered topologically in config order, and
able to say which nodes a partial run needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import UserError

NODE_KINDS = ("produce", "vote", "propagate")
ODD_POLICIES = ("first_source", "own_threshold")


@dataclass(frozen=True)
class Node:
    """One node of the graph, with its validated parameters (a plain dict of NodeConfig)."""

    name: str
    kind: str
    params: Mapping[str, Any]

    @property
    def inputs(self) -> tuple[str, ...]:
        """Nodes whose mask sets this node reads, in order (vote input 0 first)."""
        if self.kind == "vote":
            return tuple(self.params["sources"])
        if self.kind == "propagate":
            extra = self.params.get("keyframe_from")
            source = self.params["source"]
            return (source,) if extra in (None, source) else (source, extra)
        return ()

    @property
    def stage(self) -> str:
        return str(self.params.get("stage") or "")


class Recipe:
    """The validated graph. ``nodes`` are in topological order (ties keep config order)."""

    def __init__(self, name: str, nodes: list[Node], submission: str, package_format: str):
        self.name = name
        self.nodes = nodes
        self.by_name = {n.name: n for n in nodes}
        self.submission = submission
        self.package_format = package_format

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Recipe:
        """Build from the composed config (needs ``recipe``, ``producers`` and ``engines``)."""
        recipe = cfg["recipe"]
        producers = cfg.get("producers", {})
        engines = cfg.get("engines", {})
        raw = recipe.get("nodes") or {}
        if not raw:
            raise UserError(f"recipe {recipe.get('name')!r} has no nodes")
        nodes = [
            _validated_node(name, params, raw, producers, engines) for name, params in raw.items()
        ]
        ordered = _topological(nodes)
        submission = recipe["submission"]
        if submission not in raw:
            raise UserError(f"recipe.submission {submission!r} is not a node; nodes: {sorted(raw)}")
        if recipe.get("package_format", "ytvos") not in ("ytvos", "mevis"):
            raise UserError(
                f"recipe.package_format must be ytvos or mevis, not {recipe['package_format']!r}"
            )
        return cls(recipe["name"], ordered, submission, recipe.get("package_format", "ytvos"))

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


def default_min_votes(node: Node, pool: int) -> float:
    """The vote threshold: explicit, else half of the votes (ties go to foreground)."""
    explicit = node.params.get("min_votes")
    if explicit is not None:
        return float(explicit)
    return len(node.params["sources"]) * pool / 2


def _validated_node(
    name: str,
    params: Mapping[str, Any],
    all_nodes: Mapping[str, Any],
    producers: Mapping[str, Any],
    engines: Mapping[str, Any],
) -> Node:
    where = f"recipe.nodes.{name}"
    kind = params.get("kind")
    if kind not in NODE_KINDS:
        raise UserError(f"{where}.kind must be one of {NODE_KINDS}, not {kind!r}")

    def need_node(key: str, value: str | None) -> None:
        if value not in all_nodes:
            raise UserError(f"{where}.{key}: {value!r} is not a node; nodes: {sorted(all_nodes)}")

    if kind == "produce":
        producer = params.get("producer")
        if producer not in producers:
            raise UserError(
                f"{where}.producer: {producer!r} is not configured; producers: {sorted(producers)}"
            )
    elif kind == "vote":
        sources = list(params.get("sources") or [])
        if not sources:
            raise UserError(f"{where}.sources: a vote needs at least one source")
        if len(set(sources)) != len(sources):
            raise UserError(f"{where}.sources lists a node twice: {sources}")
        for source in sources:
            need_node("sources", source)
        weights = params.get("weights")
        if weights is not None and len(weights) != len(sources):
            raise UserError(f"{where}.weights: {len(weights)} weights for {len(sources)} sources")
        if params.get("odd", "first_source") not in ODD_POLICIES:
            raise UserError(f"{where}.odd must be one of {ODD_POLICIES}, not {params['odd']!r}")
        keyframe_from = params.get("keyframe_from")
        if keyframe_from is not None and keyframe_from not in sources:
            raise UserError(f"{where}.keyframe_from: {keyframe_from!r} is not one of its sources")
    else:
        need_node("source", params.get("source"))
        if params.get("keyframe_from") is not None:
            need_node("keyframe_from", params["keyframe_from"])
        engine = params.get("engine")
        if engine not in engines:
            raise UserError(
                f"{where}.engine: {engine!r} is not configured; engines: {sorted(engines)}"
            )
    return Node(name, kind, dict(params))


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
