"""A track's PNG frames decoded and encoded in parallel threads (pipeline.core.masks.codec):
the serial reader's values, bytes and errors, on the threads the compute budget allows."""

from __future__ import annotations

import io
import os
import re
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import pipeline.core.masks.codec as codec
from pipeline.core.errors import InputFileError
from pipeline.core.io import decode_mask_stack, encode_mask_png
from pipeline.core.masks import MaskSet, PngFolderSource, Track, ZipSource
from pipeline.core.masks.codec import codec_threads, decode_mask_pngs, encode_mask_pngs
from pipeline.core.parallel import available_cores


def _png(pixels: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L")
    if mode == "P":
        im = im.convert("P")
    im.save(buf, format="PNG")
    return buf.getvalue()


def _mixed_frames(rng: np.random.Generator, T: int, H: int, W: int) -> list[bytes]:
    """'L' 0/255, 'L' with other values, palette and colour PNGs, in turn."""
    out = []
    for t in range(T):
        kind = t % 4
        if kind == 0:
            out.append(_png((rng.random((H, W)) < 0.3).astype(np.uint8) * 255, "L"))
        elif kind == 1:
            out.append(_png(rng.integers(0, 3, (H, W), dtype=np.uint8), "L"))
        elif kind == 2:
            out.append(_png(rng.integers(0, 2, (H, W), dtype=np.uint8) * 200, "P"))
        else:
            rgb = np.zeros((H, W, 3), np.uint8)
            rgb[..., t % 3] = (rng.random((H, W)) < 0.5) * 255
            out.append(_png(rgb, "RGB"))
    return out


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_decode_equals_the_serial_reader(threads: int) -> None:
    datas = _mixed_frames(np.random.default_rng(threads), 13, 37, 53)
    frames = [(d, f"f{k}") for k, d in enumerate(datas)]
    expected = decode_mask_stack(frames)
    got = decode_mask_pngs(frames, threads=threads)
    assert got.dtype == bool and got.shape == (13, 37, 53)
    np.testing.assert_array_equal(got, expected)


def test_frames_are_decoded_on_the_pool_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: set[str] = set()
    real = codec.decode_png_pixels

    def spy(data: bytes, name: str) -> np.ndarray:
        seen.add(threading.current_thread().name)
        return real(data, name)

    monkeypatch.setattr(codec, "decode_png_pixels", spy)
    datas = _mixed_frames(np.random.default_rng(0), 8, 16, 16)
    decode_mask_pngs([(d, "x") for d in datas], threads=2)
    assert seen and all(name.startswith("lsvos-png") for name in seen), seen
    seen.clear()
    decode_mask_pngs([(d, "x") for d in datas], threads=1)
    assert seen == {threading.current_thread().name}  # one thread: the caller's own


def test_errors_name_the_first_bad_frame_in_order(tmp_path: Path) -> None:
    good = encode_mask_png(np.ones((8, 8), bool))
    other = encode_mask_png(np.ones((8, 9), bool))
    frames = [(good, "a.png"), (good, "b.png"), (b"not a png", "c.png"), (other, "d.png")]
    with pytest.raises(InputFileError, match=r"c\.png"):
        decode_mask_pngs(frames, threads=3)
    with pytest.raises(
        InputFileError, match=r"d\.png is 8x9, the track's first frame a\.png is 8x8"
    ):
        decode_mask_pngs([frames[0], frames[1], frames[3]], threads=3)
    missing = tmp_path / "missing.png"
    with pytest.raises(InputFileError, match=re.escape(f"mask not found: {missing}")):
        decode_mask_pngs([(good, "a.png"), (missing, str(missing))], threads=2)
    with pytest.raises(InputFileError, match=r"corrupt PNG first\.png"):
        decode_mask_pngs([(b"\x89PNG garbage", "first.png"), (good, "b.png")], threads=2)
    with pytest.raises(InputFileError, match="no PNG files"):
        decode_mask_pngs([], threads=2)


def test_parallel_encode_gives_the_serial_bytes() -> None:
    masks = np.random.default_rng(5).random((9, 31, 47)) < 0.4
    expected = [encode_mask_png(m) for m in masks]
    assert encode_mask_pngs(masks, threads=3) == expected
    assert encode_mask_pngs(masks, threads=1) == expected


def test_threads_follow_opencv_s_count_within_the_cores() -> None:
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        assert codec_threads() == 1
        cv2.setNumThreads(64)
        assert codec_threads() == available_cores()
    finally:
        cv2.setNumThreads(before)


def test_sources_read_alike_from_concurrent_callers_and_a_forked_child(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    masks = rng.random((7, 20, 24)) < 0.5
    frames = tuple(f"{5 * t:05d}" for t in range(7))
    png_set = MaskSet(tmp_path / "set", "png")
    png_set.write("v", "0", Track(frames, masks))
    png_set.mark_complete("v")
    png_set.export_png(tmp_path / "sub")
    folder = PngFolderSource(tmp_path / "sub")
    with zipfile.ZipFile(tmp_path / "sub.zip", "w") as zf:
        for fid in frames:
            zf.write(tmp_path / "sub" / "Annotations" / "v" / "0" / f"{fid}.png", f"v/0/{fid}.png")
    sources = [png_set, folder, ZipSource(tmp_path / "sub.zip")]
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        results: list[bool] = []

        def read_all() -> None:
            for _ in range(3):
                results.extend(np.array_equal(s.read("v", "0").masks, masks) for s in sources)

        callers = [threading.Thread(target=read_all) for _ in range(3)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert results == [True] * 27
        pid = os.fork()  # the parent's pool has no threads in the child: it must make its own
        if pid == 0:
            ok = all(np.array_equal(s.read("v", "0").masks, masks) for s in sources)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        cv2.setNumThreads(before)
