"""Dataset splits opened once per process (tasks on the same worker share the reader)."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from pipeline.core.data import RVOSDataset, open_dataset
from pipeline.core.errors import UserError
from pipeline.orchestration.config import DatasetConfig

_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def _open(format: str, root: str, split: str) -> RVOSDataset:
    return open_dataset(format, root, split)


def open_split(dataset: DatasetConfig) -> RVOSDataset:
    """The split's reader, opened once per process."""
    with _LOCK:
        return _open(str(dataset.format), str(Path(dataset.root).resolve()), dataset.split)


def expression_ids(dataset: DatasetConfig, video: str) -> list[str]:
    """The video's expression ids in meta order."""
    return [e.id for e in open_split(dataset).expressions(video)]


def dataset_problems(dataset: DatasetConfig) -> list[str]:
    """Why ``dataset``'s split cannot be read (empty when it can, or when the synthetic benchmark
    will be generated there on first use): a missing root or meta file, named."""
    if dataset.synthetic and dataset.synthetic.generate:
        return []
    root = Path(dataset.root).resolve()
    if not root.is_dir():
        return [f"dataset.root: folder not found: {root}"]
    try:
        open_split(dataset)
    except UserError as err:
        return [f"dataset.root: {err}"]
    return []
