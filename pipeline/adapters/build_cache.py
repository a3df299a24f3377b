"""Models built once per process: the producers' and engines' cache of built objects.

A build that failed fails again at once while its checkpoint file is unchanged (each video's
task of a run would otherwise repeat the same failing build), and is tried again once the file
is replaced (a long-lived ``lsvos serve`` must not keep an old failure).

Builds are serialised per key, not globally: two tasks asking for the same model wait for one
build, while a task building another model (or reading a built one) never waits for it. The
cache-wide lock is held only to find a key's lock and to read or store an entry, never during
a build.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from pipeline.adapters.weights import file_stamp
from pipeline.core.errors import UserError

T = TypeVar("T")
Stamp = tuple[int, int] | None


class BuildCache(Generic[T]):
    """Built objects by key, and the failures by key with their checkpoint file's stamp."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the three dicts; never held while building
        self._key_locks: dict[str, threading.Lock] = {}
        self._built: dict[str, T] = {}
        self._failed: dict[str, tuple[Stamp, UserError]] = {}

    def get(self, key: str, checkpoint: str | None, build: Callable[[], T]) -> T:
        """The object built for ``key`` (``build()`` on the first call); a :class:`UserError`
        from ``build`` is raised again without building while ``checkpoint`` is unchanged."""
        with self._lock:
            if key in self._built:
                return self._built[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one build per key; other keys build meanwhile
            stamp = file_stamp(checkpoint)
            with self._lock:
                if key in self._built:  # built while this task waited
                    return self._built[key]
                failed = self._failed.get(key)
            if failed is not None and failed[0] == stamp:
                raise failed[1]
            try:
                built = build()
            except UserError as err:
                with self._lock:
                    self._failed[key] = (stamp, err)
                raise
            with self._lock:
                self._built[key] = built
                self._failed.pop(key, None)
            return built
