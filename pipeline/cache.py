"""Cache keys and locations of node outputs, shared by every process and flow run.

A node's key hashes what determines its output: its own parameters, its producer's or engine's
settings (not the device), the identity of its weights file, the keys of its inputs, the dataset
split, and a code version (a hash of the source files that implement the node's kind). Its mask
set lives at ``<output_root>/cache/<dataset>/<node>-<key>``; per-video completion markers inside
the mask set keep partial outputs invisible. So a changed stage-II setting gives stage-II nodes
new keys (and new folders) while stage-I folders are reused, and deleting one video's output
of a node recomputes that (node, video) and, for that video only, the nodes downstream of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.recipe import Node, Recipe

REPO_ROOT = Path(__file__).resolve().parents[1]

# Source trees whose content is part of each node kind's code version.
CODE_PATHS: dict[str, tuple[str, ...]] = {
    "produce": ("models", "pipeline/producers.py", "pipeline/tokenize.py", "pipeline/masks"),
    "import": ("pipeline/producers.py", "pipeline/masks", "pipeline/io.py"),
    "vote": ("pipeline/vote.py", "pipeline/keyframes.py", "pipeline/masks", "pipeline/io.py"),
    "propagate": ("vos", "pipeline/propagation.py", "pipeline/keyframes.py", "pipeline/masks"),
}
_NOT_IN_KEY = ("device", "stage")
_CONTENT_HASH_LIMIT = 64 * 2**20  # hash small weights files whole; big ones by size + mtime


@cache
def code_version(kind: str) -> str:
    """Hash of the source files implementing a node kind (16 hex digits)."""
    digest = hashlib.sha256(kind.encode())
    for rel in CODE_PATHS[kind]:
        path = REPO_ROOT / rel
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(str(file.relative_to(REPO_ROOT)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def file_identity(path: str | None) -> str | None:
    """A stable identity of a weights/predictions file or folder (content hash when small)."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return f"missing:{p}"
    if p.is_dir():
        stats = sorted(
            (str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns)
            for f in p.rglob("*")
            if f.is_file()
        )
        return "dir:" + _digest(stats)
    stat = p.stat()
    if stat.st_size <= _CONTENT_HASH_LIMIT:
        return "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()[:32]
    return f"stat:{stat.st_size}:{stat.st_mtime_ns}"


def dataset_identity(dataset: Mapping[str, Any]) -> str:
    """A short folder name for a dataset split: ``<format>-<split>-<hash of root and videos>``."""
    root = str(Path(dataset["root"]).resolve())
    videos = dataset.get("videos")
    return f"{dataset['format']}-{dataset['split']}-{_digest([root, videos])[:8]}"


def node_keys(recipe: Recipe, cfg: Mapping[str, Any]) -> dict[str, str]:
    """The cache key of every node (inputs before dependents)."""
    keys: dict[str, str] = {}
    dataset_id = dataset_identity(cfg["dataset"])
    for node in recipe.nodes:
        keys[node.name] = _node_key(node, cfg, dataset_id, [keys[i] for i in node.inputs])
    return keys


def node_kind_for_code(node: Node, cfg: Mapping[str, Any]) -> str:
    if node.kind == "produce":
        family = cfg["producers"][node.params["producer"]]["family"]
        return "import" if family == "import" else "produce"
    return node.kind


def _node_key(
    node: Node, cfg: Mapping[str, Any], dataset_id: str, input_keys: Iterable[str]
) -> str:
    own = {k: v for k, v in node.params.items() if k not in _NOT_IN_KEY}
    extra: dict[str, Any] = {}
    if node.kind == "produce":
        producer = dict(cfg["producers"][node.params["producer"]])
        extra = {k: v for k, v in producer.items() if k not in _NOT_IN_KEY}
        for field in ("checkpoint", "tokenizer", "predictions", "scores"):
            extra[field] = file_identity(extra.get(field))  # content, not location
    elif node.kind == "propagate":
        engine = dict(cfg["engines"][node.params["engine"]])
        extra = {k: v for k, v in engine.items() if k not in _NOT_IN_KEY}
        extra["checkpoint"] = file_identity(extra.get("checkpoint"))
    payload = {
        "kind": node.kind,
        "params": own,
        "extra": extra,
        "inputs": list(input_keys),
        "dataset": dataset_id,
        "code": code_version(node_kind_for_code(node, cfg)),
    }
    return _digest(payload)[:16]


def node_dir(output_root: str | Path, dataset_id: str, node_name: str, key: str) -> Path:
    return Path(output_root) / "cache" / dataset_id / f"{node_name}-{key}"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
