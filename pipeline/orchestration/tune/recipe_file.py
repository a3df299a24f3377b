"""The chosen vote as a recipe YAML that ``lsvos run recipe=<name>`` takes unchanged.

The recipe holds the nodes of the base recipe the chosen vote reads (its sources and everything
upstream of them, as the base configured them), the producers and engines those nodes use (every
field, so their cache keys, and therefore their cached outputs, are the base run's), and the
chosen vote as the submission. Paths under ``weights/`` are written as ``${weights:NAME}``, as
the shipped recipes do. The file is written atomically, and only over a file it wrote before.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from pipeline.core.errors import UserError
from pipeline.core.io import atomic_write_text
from pipeline.core.vote import VoteSpec
from pipeline.orchestration.config import (
    WEIGHTS_DIR,
    NodeConfig,
    ProduceNode,
    PropagateNode,
    VoteNode,
    plain_data,
)
from pipeline.orchestration.tune.run_nodes import RunNodes

MARKER = "# Written by `lsvos tune`"
TUNED_STAGE = "tuned"


def vote_node(spec: VoteSpec, stage: str = TUNED_STAGE) -> VoteNode:
    """The recipe node of a vote spec (the inverse of
    :func:`pipeline.orchestration.nodes.vote.vote_spec` for the specs the search makes)."""
    return VoteNode(
        stage=stage,
        sources=list(spec.sources),
        weights=list(spec.weights) if spec.weights is not None else None,
        min_votes=spec.min_votes,
        pairs=spec.pairs,
        odd=spec.odd_policy,  # type: ignore[arg-type]
        odd_min_votes=spec.odd_min_votes,
        sigmoid_twice_compat=spec.sigmoid_twice,
        resize=spec.resize,
        keyframe_from=spec.key_frame_source,
        mode=spec.mode,  # type: ignore[arg-type]
        prob_threshold=spec.prob_threshold,
        key_frame_rule=spec.key_frame_rule,  # type: ignore[arg-type]
    )


def tuned_recipe(
    run: RunNodes, spec: VoteSpec, *, name: str, description: str
) -> tuple[dict[str, Any], str]:
    """``(config data, vote node name)``: the recipe ``name`` whose submission is ``spec``
    over the run's nodes."""
    recipe = run.recipe
    needed = recipe.ancestors(spec.sources)
    node_name = _free_name("tuned", set(recipe.by_name))
    nodes: dict[str, Any] = {
        n.name: compact_node(n.config) for n in recipe.nodes if n.name in needed
    }
    nodes[node_name] = compact_node(vote_node(spec))
    configs = [recipe.by_name[n].config for n in needed]
    producers = sorted({c.producer for c in configs if isinstance(c, ProduceNode)})
    engines = sorted({c.engine for c in configs if isinstance(c, PropagateNode)})
    data: dict[str, Any] = {}
    if producers:
        data["producers"] = {p: _portable(plain_data(run.cfg.producers[p])) for p in producers}
    if engines:
        data["engines"] = {e: _portable(plain_data(run.cfg.engines[e])) for e in engines}
    data["recipe"] = {
        "name": name,
        "description": description,
        "submission": node_name,
        "package_format": str(recipe.package_format),
        "nodes": nodes,
    }
    return data, node_name


def write_recipe(path: Path, data: dict[str, Any], comments: list[str]) -> None:
    """Write the recipe YAML atomically; refuses to replace a file ``lsvos tune`` did not
    write (a hand-written recipe)."""
    if path.is_file() and not path.read_text(errors="replace").startswith(
        f"# @package _global_\n{MARKER}"
    ):
        raise UserError(f"{path} exists and was not written by `lsvos tune`: choose another --out")
    header = ["# @package _global_", MARKER, *(f"# {line}" for line in comments)]
    body = OmegaConf.to_yaml(OmegaConf.create(data))
    atomic_write_text(path, "\n".join(header) + "\n" + body)


def _free_name(base: str, taken: set[str]) -> str:
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def compact_node(node: NodeConfig) -> dict[str, Any]:
    """A node as a mapping: its kind, required fields and fields off their defaults."""
    out: dict[str, Any] = {"kind": str(node.kind)}
    for f in fields(node):
        if f.name == "kind":
            continue
        value = getattr(node, f.name)
        if f.default is not MISSING and value == f.default:
            continue
        if f.default_factory is not MISSING and value == f.default_factory():
            continue
        out[f.name] = plain_data(value)
    return out


def _portable(value: Any) -> Any:
    """``value`` with paths inside ``weights/`` written as ``${weights:NAME}``."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        path = Path(value)
        if path.is_relative_to(WEIGHTS_DIR):
            return "${weights:" + str(path.relative_to(WEIGHTS_DIR)) + "}"
    return value
