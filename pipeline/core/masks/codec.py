"""A track's PNG frames decoded (and encoded) in parallel threads, one frame per task.

Decoding PNG masks is what bounds reading upstream submission folders and zips (zlib inflate
of every full-size frame). OpenCV's ``imdecode`` / ``imencode``, file reads and numpy's
comparisons release the GIL, so threads of one process decode frames side by side, with no
worker process to start and nothing to pickle, and the decoded frames go straight into one
``T x H x W bool`` array (no per-frame copies are kept).

How many threads: :func:`codec_threads`, OpenCV's own thread count (``cv2.setNumThreads``),
at most the cores this process may use. That count is already the compute budget everywhere
the pipeline sets one: a :func:`~pipeline.core.parallel.process_imap` worker process sets it
to 1 (its processes are the parallelism), the flow sets it to ``runtime.threads_per_worker``
for each task, and a plain process (``lsvos vote``, ``lsvos eval``) has OpenCV's default, the
cores. Each calling thread has a pool of its own (created on first use, dropped with the
thread), so concurrent callers, such as the flow's worker threads, never queue behind one
another, and a forked child makes itself a new one.

Values read are exactly :func:`pipeline.core.io.decode_png_pixels`' (any non-zero pixel, or
channel, is foreground), and errors are the serial reader's: the first failing frame in frame
order is raised, naming its file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from pipeline.core.errors import InputFileError
from pipeline.core.io import decode_png_pixels, encode_mask_png, read_png_bytes
from pipeline.core.parallel import available_cores

PngFrame = tuple[bytes | Path, str]
"""One frame to decode: its PNG bytes, or the path to read them from, and the name that errors
give it (a path, or ``archive:member``)."""

Result = TypeVar("Result")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_LOCAL = threading.local()


def codec_threads() -> int:
    """Threads a track's frames are decoded or encoded with: OpenCV's thread count (the
    process's compute budget, see the module docstring), at least 1, at most the cores."""
    return max(1, min(cv2.getNumThreads(), available_cores()))


def _pool(threads: int) -> ThreadPoolExecutor:
    """The calling thread's own pool of ``threads`` threads (a new one after a fork, or for
    another size)."""
    pool: ThreadPoolExecutor | None = getattr(_LOCAL, "pool", None)
    if pool is not None and _LOCAL.pid == os.getpid() and _LOCAL.size == threads:
        return pool
    if pool is not None and _LOCAL.pid == os.getpid():
        pool.shutdown(wait=False)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="lsvos-png")
    _LOCAL.pool, _LOCAL.pid, _LOCAL.size = pool, os.getpid(), threads
    return pool


def _run_in_order(tasks: Sequence[Callable[[], Result]], threads: int) -> list[Result]:
    """Every task's result, in order; the first task (in order) that raised has its error
    raised, after every task that started has finished."""
    if threads <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    pool = _pool(min(threads, len(tasks)))
    futures: list[Future[Result]] = [pool.submit(task) for task in tasks]
    results: list[Result] = []
    try:
        for future in futures:
            results.append(future.result())
    except BaseException:
        for future in futures:
            future.cancel()
        for future in futures:  # none may still write into the caller's arrays
            if not future.cancelled():
                future.exception()
        raise
    return results


def _header_size(data: bytes) -> tuple[int, int] | None:
    """``(H, W)`` from a PNG's IHDR chunk, or ``None`` where ``data`` does not start like one."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    return (height, width) if height > 0 and width > 0 else None


def _load(frame: PngFrame) -> bytes:
    data, _ = frame
    return read_png_bytes(data) if isinstance(data, Path) else data


def decode_mask_pngs(frames: Sequence[PngFrame], *, threads: int | None = None) -> np.ndarray:
    """Decode a track's PNG masks into one ``T x H x W bool`` array (non-zero = foreground),
    frames in parallel on ``threads`` threads (default :func:`codec_threads`).

    The size is the first frame's; a frame of another size raises
    :class:`~pipeline.core.errors.InputFileError` naming both files, as a missing, unreadable or
    corrupt frame raises naming its own. With several bad frames, the first in order is named.
    """
    if not frames:
        raise InputFileError("no PNG files to read")
    first_name = frames[0][1]
    first_data = _load(frames[0])
    size = _header_size(first_data)
    if size is None:  # not a PNG header: the decoder names what is wrong with it
        size = decode_png_pixels(first_data, first_name).shape[:2]
    out = np.empty((len(frames), *size), bool)

    def decode(k: int) -> None:
        name = frames[k][1]
        pixels = decode_png_pixels(first_data if k == 0 else _load(frames[k]), name)
        if pixels.shape[:2] != size:
            raise InputFileError(
                f"{name} is {pixels.shape[0]}x{pixels.shape[1]}, the track's first frame "
                f"{first_name} is {size[0]}x{size[1]}"
            )
        if pixels.ndim == 3:
            np.any(pixels, axis=2, out=out[k])
        else:
            np.not_equal(pixels, 0, out=out[k])

    threads = codec_threads() if threads is None else threads
    _run_in_order([lambda k=k: decode(k) for k in range(len(frames))], threads)
    return out


def encode_mask_pngs(masks: np.ndarray, *, threads: int | None = None) -> list[bytes]:
    """``T x H x W bool`` masks to ``T`` 8-bit 'L' PNGs holding 0 / 255
    (:func:`pipeline.core.io.encode_mask_png`, byte for byte), frames in parallel on
    ``threads`` threads (default :func:`codec_threads`)."""
    threads = codec_threads() if threads is None else threads
    tasks = [lambda m=m: encode_mask_png(m) for m in masks]
    return _run_in_order(tasks, threads)
