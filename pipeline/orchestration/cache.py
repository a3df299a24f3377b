"""Cache keys and locations of node outputs, shared by every process, flow run and host.

A node's key hashes everything that can change its output and nothing that cannot:

- its typed configuration and its producer's or engine's, every field except those marked
  ``{"key": False}`` in the schema (device, stage label);
- the plan's flags for the job (``keep_probs``: a downstream vote reads its probabilities);
- the content identity of each file it reads (checkpoint, tokenizer, imported predictions and
  scores): a SHA-256, memoised per (path, size, mtime) in ``<output_root>/cache/file-identities
  .json`` so a big checkpoint is hashed once;
- the keys of its inputs, the dataset's content identity (:func:`dataset_identity`) and the
  code version of its kind (:mod:`pipeline.orchestration.code_version`).

Its mask set lives at ``<output_root>/cache/<dataset id>/<node>-<key>``; per-video completion
markers inside keep partial outputs invisible. Nothing in a key depends on where the outputs
folder, the dataset or the weights are mounted, so a copied or shared outputs folder is reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from pipeline.core.data import RVOSDataset
from pipeline.core.io import atomic_write_json, read_json
from pipeline.orchestration.code_version import code_version
from pipeline.orchestration.config import (
    DatasetConfig,
    EngineConfig,
    NodeConfig,
    ProducerConfig,
    plain_data,
)

_FILE_FIELDS = ("checkpoint", "tokenizer", "predictions", "scores")
_LOCK = threading.Lock()


def key_fields(config: Any) -> dict[str, Any]:
    """The fields of a typed config that can change an output (schema metadata decides)."""
    assert is_dataclass(config), config
    return {
        f.name: plain_data(getattr(config, f.name))
        for f in fields(config)
        if f.metadata.get("key", True)
    }


def node_key(
    node: NodeConfig,
    *,
    kind: str,
    producer: ProducerConfig | None,
    engine: EngineConfig | None,
    keep_probs: bool,
    input_keys: Iterable[str],
    dataset_id: str,
    files: FileIdentities,
) -> str:
    """The cache key (16 hex digits) of one node as the plan will run it."""
    model: dict[str, Any] = {}
    for settings in (producer, engine):
        if settings is not None:
            model = key_fields(settings)
            for name in _FILE_FIELDS:
                if name in model:
                    model[name] = files.identity(model[name])  # content, not location
    payload = {
        "kind": kind,
        "node": key_fields(node),
        "model": model,
        "flags": {"keep_probs": keep_probs},
        "inputs": list(input_keys),
        "dataset": dataset_id,
        "code": code_version(kind),
    }
    return digest(payload)[:16]


def node_dir(output_root: str | Path, dataset_id: str, node_name: str, key: str) -> Path:
    return Path(output_root) / "cache" / dataset_id / f"{node_name}-{key}"


def dataset_identity(dataset: DatasetConfig, handle: RVOSDataset, videos: list[str]) -> str:
    """``<format>-<split>-<hash>``: the hash covers the meta file's content and, per selected
    video, its frame names and file sizes, not the folder the split is mounted at."""
    frames = []
    for video_id in videos:
        video = handle.video(video_id)
        sizes = [_size(p) for p in video.frame_paths]
        frames.append([video_id, list(video.frame_ids), sizes])
    payload = {
        "format": str(dataset.format),
        "split": dataset.split,
        "meta": _sha256(handle.meta.path),
        "frames": frames,
    }
    return f"{dataset.format}-{dataset.split}-{digest(payload)[:8]}"


class FileIdentities:
    """Content identities of files and folders, memoised on disk per (path, size, mtime).

    The memo (``<output_root>/cache/file-identities.json``) is only a shortcut: an entry whose
    file changed size or mtime is hashed again, and a missing or unreadable memo is rebuilt.
    """

    def __init__(self, output_root: str | Path) -> None:
        self.path = Path(output_root) / "cache" / "file-identities.json"
        self._memo: dict[str, str] = {}
        self._dirty = False
        if self.path.is_file():
            try:
                loaded = read_json(self.path)
                self._memo = {str(k): str(v) for k, v in loaded.items()}
            except Exception:  # a torn or foreign memo: start again
                self._memo = {}

    def identity(self, path: str | None) -> str | None:
        """``sha256:<hex>`` of a file, ``dir:<hex>`` of a folder's files, or ``missing``."""
        if path is None:
            return None
        p = Path(path)
        if p.is_dir():
            entries = sorted(
                (str(f.relative_to(p)), self._file_sha(f)) for f in p.rglob("*") if f.is_file()
            )
            return "dir:" + digest(entries)[:32]
        if not p.is_file():
            return "missing"
        return "sha256:" + self._file_sha(p)

    def _file_sha(self, path: Path) -> str:
        stat = path.stat()
        memo_key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        with _LOCK:
            known = self._memo.get(memo_key)
        if known is not None:
            return known
        value = _sha256(path)[:32]
        with _LOCK:
            self._memo[memo_key] = value
            self._dirty = True
        return value

    def save(self) -> None:
        """Write the memo back (atomically) when something was hashed."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK:
            merged = dict(self._memo)
        if self.path.is_file():  # another run may have added entries meanwhile
            with contextlib.suppress(Exception):
                merged = {**read_json(self.path), **merged}
        atomic_write_json(self.path, merged)
        self._dirty = False


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
