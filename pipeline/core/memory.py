"""Bounding a process's peak memory between and across tasks.

glibc keeps memory a task freed in its malloc arenas (one per thread that allocates) instead of
giving it back: a tensor freed in the middle of a heap pins its pages until everything above it
is freed too. A model task on the demo leaves 300-450 MB of such free pages behind per worker
thread, so the process's resident size after a few tasks is mostly memory no one holds and the
next task's peak stacks on top of it. :func:`release_freed_memory` (``malloc_trim(0)``) hands
those pages back; it frees nothing in use and changes no result.

:func:`model_slot` lets one model task compute at a time in a process: each already runs its
tensor ops on all of torch's intra-op threads, so two at once add nothing on the CPU but a
second set of activations (the demo's peak was two SgMg videos side by side).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

# A module global, not the flow's: a task function a Dask runner pickles by value must not hold it.
_MODEL_TASK = threading.Lock()


def model_slot(exclusive: bool) -> AbstractContextManager[object]:
    """The process's one model slot when ``exclusive`` (held while the task computes), else a
    no-op context."""
    return _MODEL_TASK if exclusive else contextlib.nullcontext()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows).

    Looked up among the symbols the process already has loaded (no ``find_library``, which
    runs a subprocess)."""
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError, TypeError):
        return None


def release_freed_memory() -> bool:
    """Give the C heap's free pages back to the OS; False where that is not available."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
