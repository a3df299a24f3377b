"""Per-video work in a process pool: results in order, state shipped to each worker once.

``fn(shared, item)`` runs for every item. With ``workers <= 1`` (or a single item) it runs in
this process; otherwise in ``forkserver`` processes that receive ``shared`` once, at start-up
(mask sources, a dataset reader, a spec), and only the items per task. The first error stops
the pool (pending tasks are cancelled) and is raised here.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

_SHARED: list[Any] = []


def _start_worker(shared: Any) -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already
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
