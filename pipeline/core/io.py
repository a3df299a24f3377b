"""Reading and writing images, masks and small files; every write is atomic.

Conventions (datasets.md, section 4):

* frames are JPEG, read as ``H x W x 3 uint8`` RGB;
* masks are written as single-channel 8-bit 'L' PNGs holding 0 / 255, and read as
  ``H x W bool`` with any non-zero pixel counting as foreground (palette PNGs are read by index,
  so a palette mask whose object index is 1 also reads as foreground);
* annotations are palette ('P') PNGs whose pixel value is the object id, read as ``H x W uint8``.

A corrupt or truncated file raises :class:`~pipeline.core.errors.InputFileError` naming it. Writes
go to a temporary file in the destination folder and are moved into place with
:func:`os.replace`, so a reader never sees half a file; a write the filesystem refuses (full
disk, quota, read-only) removes the temporary file and raises
:class:`~pipeline.core.errors.OutputWriteError` naming the destination.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

try:  # POSIX advisory locks: released by the kernel when the holder dies, even by SIGKILL
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

import cv2
import numpy as np
from PIL import Image

from pipeline.core.errors import InputFileError, OutputWriteError

# cv2 PNG settings for masks: no row filter and zlib's RLE strategy give the fastest encode and
# decode for two-valued images, and a file a little larger than PIL's default. The bytes depend
# only on the pixels (and the OpenCV build), which keeps packaged zips reproducible.
MASK_PNG_PARAMS = (
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_RLE,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_NONE,
)


# --------------------------------------------------------------------------------------------
# atomic writes


def temp_sibling(path: Path) -> Path:
    """A new temporary sibling of ``path``: ``.<name>.<8 hex digits>.tmp`` (matched by
    :func:`temp_sibling_pattern`)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


# errno values that mean the filesystem refused a write of an output (not a bad input): a
# writer turns an OSError with one of these, raised while it writes, into OutputWriteError
WRITE_ERRNOS = frozenset(
    code
    for code in (
        errno.ENOSPC,
        getattr(errno, "EDQUOT", None),
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EFBIG,
        errno.EIO,
    )
    if code is not None
)

_WRITE_HINTS = {
    errno.ENOSPC: "free space there and re-run: finished outputs are kept",
    getattr(errno, "EDQUOT", -1): "free space in your quota and re-run: finished outputs are kept",
    errno.EROFS: "write the outputs to a writable place",
    errno.EACCES: "check the permissions of the folder",
    errno.EPERM: "check the permissions of the folder",
}


def output_write_error(err: OSError, path: str | Path) -> OutputWriteError:
    """An :class:`OutputWriteError` for ``err``, raised writing ``path``: one line naming it."""
    reason = (err.strerror or str(err)).strip()
    reason = reason[:1].lower() + reason[1:]
    hint = _WRITE_HINTS.get(err.errno)
    return OutputWriteError(f"{reason} writing {path}" + (f" ({hint})" if hint else ""))


def is_write_error(err: BaseException) -> bool:
    """Whether ``err`` is the filesystem refusing a write (full disk, quota, read-only...)."""
    return isinstance(err, OSError) and err.errno in WRITE_ERRNOS


@contextmanager
def writing_output(path: str | Path, *, any_oserror: bool = False) -> Iterator[None]:
    """Turn a filesystem write failure inside the block into :class:`OutputWriteError` naming
    ``path``. Only errnos in :data:`WRITE_ERRNOS` are turned, unless ``any_oserror`` (for blocks
    that do nothing but write ``path``)."""
    try:
        yield
    except OutputWriteError:
        raise
    except OSError as err:
        if any_oserror or is_write_error(err):
            raise output_write_error(err, path) from err
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and :func:`os.replace`.

    A filesystem failure (full disk, read-only, permission...) removes the temporary file and
    raises :class:`OutputWriteError` naming ``path``."""
    path = Path(path)
    with writing_output(path, any_oserror=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


# A temporary sibling of a target that no live writer holds is a leftover of a killed run. With
# POSIX locks, a writer holds an exclusive ``flock`` on its temporary file for as long as it
# writes, and the kernel drops the lock when the process dies (SIGKILL included): a file whose
# lock can be taken has no live writer. The one window the lock does not cover, between creating
# the file and locking it, leaves the file empty and new, so an empty file younger than
# ``TEMP_GRACE_SECONDS`` is kept. Without ``fcntl`` (Windows) only files untouched for
# ``TEMP_STALE_SECONDS`` count as leftovers.
TEMP_GRACE_SECONDS = 60.0
TEMP_STALE_SECONDS = 3600.0


def temp_sibling_pattern(path: str | Path) -> re.Pattern[str]:
    """The names of ``path``'s temporary siblings: ``.<name>.<8 hex digits>.tmp``."""
    return re.compile(rf"\.{re.escape(Path(path).name)}\.[0-9a-f]{{8}}\.tmp")


def _unlocked(tmp: Path) -> bool:
    """Whether no live process holds the writer's lock on ``tmp`` (False when unsure)."""
    try:
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the leftovers of killed writes of ``path``; returns the files removed.

    Only regular files named ``.<name>.<8 hex>.tmp`` beside ``path`` are candidates, and only
    those no live writer holds (see :func:`locked_temp_file`) are removed.
    """
    path = Path(path)
    pattern = temp_sibling_pattern(path)
    if not path.parent.is_dir():
        return []
    removed = []
    now = time.time()
    for entry in os.scandir(path.parent):
        if not pattern.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        tmp = Path(entry.path)
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        age = now - info.st_mtime
        if fcntl is None:
            stale = age > TEMP_STALE_SECONDS
        else:
            stale = (info.st_size > 0 or age > TEMP_GRACE_SECONDS) and _unlocked(tmp)
        if stale:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextmanager
def locked_temp_file(path: str | Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A new temporary sibling of ``path``, open for writing and locked while the block runs.

    When the block succeeds the file replaces ``path``; on an exception it is removed. A run
    killed inside the block leaves the file unlocked, so :func:`remove_stale_temps` of a later
    run removes it.
    """
    path = Path(path)
    with writing_output(path, any_oserror=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        # the block's writes to f, and the flush of what f still buffers when it closes
        with writing_output(path), os.fdopen(fd, "w+b", closefd=False) as f:
            yield tmp, f
            f.flush()
        with writing_output(path, any_oserror=True):
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)  # drops the lock


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = None) -> None:
    """JSON with the mapping order kept (expression order matters to pairing)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or malformed file raises :class:`InputFileError`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as err:
        raise InputFileError(f"file not found: {path}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(f"{path} is not valid JSON: {err}") from err


@contextmanager
def staging_dir(final: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` that replaces it when the block succeeds.

    On an exception the temporary folder is removed and ``final`` is left as it was, so a failed
    write never leaves a partial folder behind. An existing ``final`` is replaced as a whole.
    """
    final = Path(final)
    with writing_output(final, any_oserror=True):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        with writing_output(final):  # the block's writes into the folder
            yield tmp
        with writing_output(final, any_oserror=True):
            replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src: Path, dest: Path) -> None:
    """Move folder ``src`` to ``dest``, replacing an existing ``dest`` folder."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(dest, old)
        os.replace(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)


# --------------------------------------------------------------------------------------------
# frames (JPEG)


def read_rgb(path: str | Path) -> np.ndarray:
    """A frame as ``H x W x 3 uint8`` RGB; a truncated or corrupt file names itself."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im)
    except FileNotFoundError as err:
        raise InputFileError(f"frame not found: {path}") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InputFileError(f"corrupt image {path}: {err}") from err


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` from the file header alone (no pixel is decoded)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError as err:
        raise InputFileError(f"image not found: {path}") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InputFileError(f"corrupt image {path}: {err}") from err
    return height, width


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """``H x W x 3 uint8`` RGB to JPEG bytes (deterministic for the same pixels)."""
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


# --------------------------------------------------------------------------------------------
# binary masks (PNG 'L' 0/255)


def encode_mask_png(mask: np.ndarray) -> bytes:
    """``H x W bool`` to an 8-bit 'L' PNG holding 0 and 255."""
    if mask.ndim != 2:
        raise ValueError(f"a mask must be H x W, got shape {mask.shape}")
    pixels = mask.astype(np.uint8, copy=False) * np.uint8(255) if mask.dtype == bool else mask
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels, dtype=np.uint8), MASK_PNG_PARAMS)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_png_pixels(data: bytes, name: str | Path) -> np.ndarray:
    """Raw pixel values of a PNG: ``H x W`` uint8 for 'L' and palette files (indices), ``H x W
    x C`` for colour ones. ``name`` is used in the error message only."""
    # cv2 decodes 'L' PNGs fastest but turns palette files into colour; PIL keeps indices.
    if data[24:26] == b"\x08\x00" and _png_complete(data):  # IHDR: 8-bit greyscale
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is not None:
            return arr
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("L", "P", "1", "RGB", "RGBA", "LA", "I", "I;16"):
                im = im.convert("L")
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError) as err:
        raise InputFileError(f"corrupt PNG {name}: {err}") from err


def decode_png_strict(data: bytes, name: str | Path) -> np.ndarray:
    """Like :func:`decode_png_pixels`, but only for a PNG every common decoder reads whole.

    The file must end with its IEND chunk, and both OpenCV and PIL must decode it to the same
    height and width; else :class:`InputFileError` naming ``name``. (PIL decodes some files
    cut inside their last IDAT chunk, which OpenCV refuses.)
    """
    if not _png_complete(data):
        raise InputFileError(f"corrupt PNG {name}: the file does not end with its IEND chunk")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputFileError(f"corrupt PNG {name}: OpenCV cannot decode it")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            width, height = im.size
    except (OSError, SyntaxError, ValueError) as err:
        raise InputFileError(f"corrupt PNG {name}: {err}") from err
    if arr.shape[:2] != (height, width):
        raise InputFileError(
            f"corrupt PNG {name}: OpenCV reads {arr.shape[0]}x{arr.shape[1]}, PIL {height}x{width}"
        )
    return decode_png_pixels(data, name)


def _png_complete(data: bytes) -> bool:
    # cv2 returns a partially decoded image for a truncated file; the IEND chunk proves it whole.
    return data.startswith(b"\x89PNG\r\n\x1a\n") and data[-12:-4] == b"\x00\x00\x00\x00IEND"


def read_png_bytes(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise InputFileError(f"mask not found: {path}") from err
    except OSError as err:
        raise InputFileError(f"cannot read {path}: {err}") from err


def pixels_to_mask(pixels: np.ndarray) -> np.ndarray:
    """Foreground = any non-zero value (any channel for colour files): ``H x W bool``."""
    if pixels.ndim == 3:
        return pixels.any(axis=2)
    return pixels != 0


def decode_mask_png(data: bytes, name: str | Path) -> np.ndarray:
    """PNG bytes to ``H x W bool`` (non-zero = foreground)."""
    return pixels_to_mask(decode_png_pixels(data, name))


def read_mask_png(path: str | Path) -> np.ndarray:
    """A mask file as ``H x W bool`` (non-zero = foreground)."""
    return decode_mask_png(read_png_bytes(path), path)


def decode_mask_stack(datas: Iterable[tuple[bytes, str]]) -> np.ndarray:
    """Decode PNG masks, given as ``(bytes, name)``, into one ``T x H x W bool`` array.

    Filled in place (no per-frame copies); a frame of another size names both files."""
    out: np.ndarray | None = None
    first = ""
    items = list(datas)
    for k, (data, name) in enumerate(items):
        pixels = decode_png_pixels(data, name)
        if out is None:
            out = np.empty((len(items), *pixels.shape[:2]), bool)
            first = name
        if pixels.shape[:2] != out.shape[1:]:
            raise InputFileError(
                f"{name} is {pixels.shape[0]}x{pixels.shape[1]}, the track's first frame "
                f"{first} is {out.shape[1]}x{out.shape[2]}"
            )
        if pixels.ndim == 3:
            np.any(pixels, axis=2, out=out[k])
        else:
            np.not_equal(pixels, 0, out=out[k])
    if out is None:
        raise InputFileError("no PNG files to read")
    return out


# --------------------------------------------------------------------------------------------
# index annotations (palette PNG, pixel = object id)


def davis_palette() -> np.ndarray:
    """The 256-entry palette of DAVIS / YouTube-VOS annotations (``256 x 3 uint8``).

    Entry ``i`` takes bit ``k`` of ``i``'s low bits into bit ``7 - j`` of red, green and blue
    in turn (the PASCAL VOC colour map): 1 is (128, 0, 0), 2 is (0, 128, 0), 3 is (128, 128, 0).
    """
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[index] = (r, g, b)
    return palette


_PALETTE_BYTES = davis_palette().tobytes()


def encode_index_png(labels: np.ndarray) -> bytes:
    """``H x W uint8`` object ids to a palette PNG with the DAVIS palette."""
    im = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    im.putpalette(_PALETTE_BYTES)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def read_index_png(path: str | Path) -> np.ndarray:
    """A palette annotation as ``H x W uint8`` object ids (an 'L' file reads its values)."""
    pixels = decode_png_pixels(read_png_bytes(path), path)
    if pixels.ndim != 2:
        raise InputFileError(f"{path}: expected a palette or greyscale PNG, got {pixels.shape}")
    return pixels.astype(np.uint8, copy=False)
