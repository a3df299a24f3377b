"""Per-video work in a process pool: results in order, state shipped to each worker once.

``fn(shared, item)`` runs for every item. With ``workers <= 1`` (or a single item) it runs in
this process; otherwise in ``forkserver`` processes that receive ``shared`` once, at start-up
(mask sources, a dataset reader, a spec), and only the items per task. The first error stops
the pool (pending tasks are cancelled) and is raised here. Each worker process computes with
one thread (OpenCV's, which also sets the PNG codec's threads of
:mod:`pipeline.core.masks.codec`, and ``OMP_NUM_THREADS=1`` for any OpenMP library it loads):
the pool's processes are the parallelism, at most :func:`available_cores` of them being useful.
With ``workers <= 1`` the caller's own thread counts apply (a plain process decodes a track's
PNG frames on one thread per core).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

_SHARED: list[Any] = []


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity mask (a container's or ``taskset``'s
    limit), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity masks on this platform
        return os.cpu_count() or 1


def _start_worker(shared: Any) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"  # one process per core already; before any OpenMP load
    import cv2

    cv2.setNumThreads(1)  # also one PNG codec thread (pipeline.core.masks.codec)
    _SHARED[:] = [shared]


def _call(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_SHARED[0], item)


def process_imap(
    fn: Callable[[Any, Item], Result],
    items: Sequence[Item],
    shared: Any,
    *,
    workers: int = 1,
    chunksize: int = 1,
) -> Iterator[Result]:
    """Yield ``fn(shared, item)`` for each item, in order (``fn`` must be a module-level
    function so that worker processes can find it)."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(shared, item)
        return
    pool = ProcessPoolExecutor(
        min(workers, len(items)),
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_start_worker,
        initargs=(shared,),
    )
    try:
        yield from pool.map(functools.partial(_call, fn), items, chunksize=chunksize)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
