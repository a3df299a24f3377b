"""COCO run-length encoding of mask stacks: pycocotools' compressed strings, coded in numpy.

The strings are exactly those of ``pycocotools.mask.encode`` (``rleToString`` in its
``maskApi.c``: run lengths, alternating from a run of zeros; from the fourth on, each stored as
the difference to the one two before; each number in little-endian 5-bit groups with a
continuation bit, offset by 48), and decode with ``pycocotools.mask.decode``. Coding them here
with vectorised numpy skips the dense column-major buffers pycocotools goes through, which
makes decoding a 720p frame some 10-30x faster (``np.repeat`` of the runs); a test checks the
strings against pycocotools on random masks.

Order. pycocotools runs down columns (Fortran order). :data:`ROW_MAJOR` records run along
rows instead, which is pycocotools' encoding of the transposed mask (its ``size`` is ``[W,
H]``): no transposition in either direction. :data:`COLUMN_MAJOR` is the standard form, the
one MeViS's ``mask_dict.json`` holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROW_MAJOR = "row"
COLUMN_MAJOR = "column"


def _check_order(order: str) -> None:
    if order not in (ROW_MAJOR, COLUMN_MAJOR):
        raise ValueError(f"unknown RLE order {order!r}")


def mask_to_runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths of a flat 0/1 sequence, the first run counting zeros (int64)."""
    flat = np.ascontiguousarray(mask).reshape(-1).view(np.uint8)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds)
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))
    return runs.astype(np.int64)


def runs_to_string(runs: np.ndarray) -> str:
    """pycocotools' compressed string of run lengths (``rleToString``)."""
    x = runs.astype(np.int64).copy()
    if x.size > 3:
        x[3:] = runs[3:] - runs[1:-2]
    chars = []
    active = np.ones(x.size, bool)
    while active.any():
        c = x & 0x1F
        x = x >> 5  # arithmetic shift, as the C code's on a signed long
        more = np.where(c & 0x10, x != -1, x != 0) & active
        chars.append(np.where(active, (c | np.where(more, 0x20, 0)) + 48, -1))
        active = more
    grid = np.stack(chars, axis=1)  # numbers x chunks, -1 past each number's end
    return grid[grid >= 0].astype(np.uint8).tobytes().decode("ascii")


def string_to_runs(counts: str | bytes) -> np.ndarray:
    """Run lengths from pycocotools' compressed string (``rleFrString``)."""
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    v = np.frombuffer(data, np.uint8).astype(np.int64) - 48
    if v.size == 0:
        return np.zeros(0, np.int64)
    last = np.flatnonzero((v & 0x20) == 0)  # the final chunk of each number
    starts = np.concatenate(([0], last[:-1] + 1))
    chunk = np.arange(v.size) - np.repeat(starts, last - starts + 1)
    x = np.add.reduceat((v & 0x1F) << (5 * chunk), starts)
    negative = (v[last] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * (chunk[last[negative]] + 1))
    # undo the differences (x[m] += x[m - 2] for m > 2): running sums over each parity from
    # index 1 and index 2 on; x[0] stays as it is
    x[1::2] = np.cumsum(x[1::2])
    x[2::2] = np.cumsum(x[2::2])
    return x


def encode_masks(masks: np.ndarray, order: str = ROW_MAJOR) -> list[str]:
    """``T x H x W bool`` to one compressed RLE string per frame."""
    _check_order(order)
    out = []
    for m in masks:
        m = np.ascontiguousarray(m) if order == ROW_MAJOR else np.ascontiguousarray(m.T)
        out.append(runs_to_string(mask_to_runs(m)))
    return out


def decode_masks(
    counts: Sequence[str | bytes], size: tuple[int, int], order: str = ROW_MAJOR
) -> np.ndarray:
    """Compressed RLE strings (one per frame) of ``(H, W)`` masks to ``T x H x W bool``.

    One ``np.repeat`` over the runs of every frame writes the whole stack in one pass."""
    _check_order(order)
    H, W = size
    runs = [string_to_runs(c) for c in counts]
    for k, r in enumerate(runs):
        if r.sum() != H * W:
            raise ValueError(f"RLE of frame {k} covers {r.sum()} pixels, not {H}x{W}")
    if not runs:
        return np.zeros((0, H, W), bool)
    parity = [np.arange(r.size, dtype=np.uint8) & 1 for r in runs]  # runs alternate 0, 1, ...
    flat = np.repeat(np.concatenate(parity), np.concatenate(runs))
    if order == ROW_MAJOR:
        return flat.reshape(len(runs), H, W).view(bool)
    return np.ascontiguousarray(flat.reshape(len(runs), W, H).transpose(0, 2, 1)).view(bool)
