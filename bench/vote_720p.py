"""Voting 5 sources over a 720p synthetic split, against the winners' way in the same run.

Baseline (``soc_test/test_ensemble_*.py``, lsvos2023.md section 4): one process; per pair of
expressions, every source's PNGs read with PIL (``convert('P') == 255``), summed, thresholded,
each output frame written with PIL. Ours: ``pipeline.core.vote.vote_mask_sets`` on the same PNG
folders and on RLE mask sets holding the same masks, 1 and 2 processes. Floor: plain PNG
decode of every source frame the vote reads and encode of every output frame, one process, with
the codec the pipeline uses. Outputs are checked equal to the baseline's.

    python bench/vote_720p.py [--videos 8] [--work /tmp/lsvos_bench]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
import tracemalloc
from glob import glob
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vote_common import make_split, write_sources

from pipeline.core.io import encode_mask_png, read_mask_png
from pipeline.core.masks import MaskSet
from pipeline.core.vote import VoteSpec, vote_mask_sets


def winners_vote(sources: list[Path], meta: dict, out: Path) -> None:
    """The challenge's PNG vote: pairs, >= half of 2n votes; odd last: >= n // 2 + 1 of n."""
    n = len(sources)
    for video in sorted(meta):
        exps = meta[video]
        groups = [exps[i : i + 2] for i in range(0, len(exps) - 1, 2)]
        if len(exps) % 2:
            groups.append(exps[-1:])
        for group in groups:
            total = None
            for exp in group:
                for src in sources:
                    files = sorted(glob(str(src / "Annotations" / video / exp / "*.png")))
                    stack = np.stack([np.array(Image.open(f).convert("P")) == 255 for f in files])
                    total = stack.astype(np.uint8) if total is None else total + stack
            thr = n if len(group) == 2 else n // 2 + 1
            fused = np.where(total >= thr, 1, 0).astype(np.uint8)
            names = [Path(f).name for f in files]
            for exp in group:
                folder = out / video / exp
                folder.mkdir(parents=True, exist_ok=True)
                for name, mask in zip(names, fused, strict=True):
                    Image.fromarray(mask * 255).convert("L").save(folder / name)


def codec_floor(sources: list[Path], meta: dict, out: Path) -> None:
    """Decode every source PNG the vote reads, encode every output frame: nothing else."""
    for video in sorted(meta):
        for exp in meta[video]:
            first = None
            for src in sources:
                for f in sorted((src / "Annotations" / video / exp).glob("*.png")):
                    m = cv2.imdecode(np.fromfile(f, np.uint8), cv2.IMREAD_UNCHANGED)
                    first = m if first is None else first
            folder = out / video / exp
            folder.mkdir(parents=True, exist_ok=True)
            for f in sorted((sources[0] / "Annotations" / video / exp).glob("*.png")):
                (folder / f.name).write_bytes(encode_mask_png(first > 0))


def timed(fn, *args, **kwargs) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its finished children)."""
    before = _cpu()
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start, _cpu() - before


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lsvos_bench"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    ds = make_split(args.work / "synth720", args.videos)
    sources = write_sources(ds, args.work / "sources")
    meta = {v.id: [e.id for e in ds.expressions(v.id)] for v in ds.videos()}
    n_out = sum(v.num_frames * len(meta[v.id]) for v in ds.videos())
    print(
        f"{len(ds)} videos at 720p, {n_out} output frames, {len(sources)} sources "
        f"({5 * n_out} source frames read)"
    )
    out = args.work / "out"
    shutil.rmtree(out, ignore_errors=True)
    png_sources = [s["png"] for s in sources]
    rle_sources = [s["rle"] for s in sources]
    spec = VoteSpec(tuple(f"model{i}" for i in range(5)), pairs=True)

    t_base = timed(winners_vote, png_sources, meta, out / "baseline")
    t_floor = timed(codec_floor, png_sources, meta, out / "floor")
    results = {}
    for label, srcs, workers in [
        ("png sources, 1 process", png_sources, 1),
        ("png sources, 2 processes", png_sources, 2),
        ("rle sources, 1 process", rle_sources, 1),
        ("rle sources, 2 processes", rle_sources, 2),
    ]:
        dest = out / label.replace(" ", "_").replace(",", "")
        results[label] = timed(vote_mask_sets, srcs, dest, spec, workers=workers)
        fused = MaskSet(dest)
        for video, exps in meta.items():  # identical to the winners' output
            for exp in exps:
                track = fused.read(video, exp)
                for fid, mask in zip(track.frame_ids, track.masks, strict=True):
                    ref = read_mask_png(out / "baseline" / video / exp / f"{fid}.png")
                    assert np.array_equal(mask, ref), (label, video, exp, fid)

    # memory: the peak over the whole split against the largest peak of any one video
    single = []
    for video in ds.videos():
        tracemalloc.start()
        vote_mask_sets(rle_sources, out / "mem_single" / video.id, spec, videos=[video.id])
        single.append(tracemalloc.get_traced_memory()[1] / 1e6)
        tracemalloc.stop()
    tracemalloc.start()
    vote_mask_sets(rle_sources, out / "mem_all", spec)
    peak_all = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()

    def line(label: str, wall: float, cpu: float) -> str:
        return (
            f"{label:<34} wall {wall:7.2f} s ({1e3 * wall / n_out:5.2f} ms/frame), cpu {cpu:7.2f} s"
        )

    print(line("baseline (PIL, one process)", *t_base))
    print(line("floor (PNG decode+encode)", *t_floor))
    for label, (wall, cpu) in results.items():
        if "1 process" in label:
            print(line(f"ours, {label}", wall, cpu))
            print(
                f"{'':<34} vs baseline: {t_base[0] / wall:4.1f}x wall, {t_base[1] / cpu:4.1f}x "
                f"cpu; vs floor: {wall / t_floor[0]:4.2f}x wall, {cpu / t_floor[1]:4.2f}x cpu"
            )
        else:  # worker processes are the forkserver's children: their CPU time is not ours
            print(f"{'ours, ' + label:<34} wall {wall:7.2f} s ({1e3 * wall / n_out:5.2f} ms/frame)")
            print(f"{'':<34} vs baseline: {t_base[0] / wall:4.1f}x wall")
    print(
        f"peak traced memory: {peak_all:.1f} MB voting all {len(ds)} videos, "
        f"{max(single):.1f} MB for the largest single video (min {min(single):.1f} MB)"
    )
    print("outputs identical to the baseline's: yes")
    print(f"load average during the run: {os.getloadavg()}")


if __name__ == "__main__":
    main()
