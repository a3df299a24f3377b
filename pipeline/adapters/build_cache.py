"""Models built once per process: the producers' and engines' cache of built objects.

A build that failed fails again at once while its checkpoint file is unchanged (each video's
task of a run would otherwise repeat the same failing build), and is tried again once the file
is replaced (a long-lived ``lsvos serve`` must not keep an old failure).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from pipeline.adapters.weights import file_stamp
from pipeline.core.errors import UserError

T = TypeVar("T")


class BuildCache(Generic[T]):
    """Built objects by key, and the failures by key with their checkpoint file's stamp."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict[str, T] = {}
        self._failed: dict[str, tuple[tuple[int, int] | None, UserError]] = {}

    def get(self, key: str, checkpoint: str | None, build: Callable[[], T]) -> T:
        """The object built for ``key`` (``build()`` on the first call); a :class:`UserError`
        from ``build`` is raised again without building while ``checkpoint`` is unchanged."""
        with self._lock:
            stamp = file_stamp(checkpoint)
            failed = self._failed.get(key)
            if failed is not None and failed[0] == stamp:
                raise failed[1]
            if key not in self._built:
                try:
                    self._built[key] = build()
                except UserError as err:
                    self._failed[key] = (stamp, err)
                    raise
                self._failed.pop(key, None)
            return self._built[key]
