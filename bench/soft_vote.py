"""Soft voting and the key-frame rules against the hard vote, in the same run.

Three RLE mask sets holding masks and float16 probabilities (smooth random maps, 360x640), the
same tracks voted with pairs pooled by ``pipeline.core.vote.vote_mask_sets``, one process:
baseline = the hard vote (half of the votes, key frames by the ``score`` rule); then the soft
vote at 0.5, the soft vote keeping its mean probabilities, and the hard vote with the
``mean_probability`` and ``agreement`` rules. Per run: wall and CPU time, the ratio to the
baseline, and the traced peak memory for one video and for all of them (flat = equal).

    python bench/soft_vote.py [--videos 4] [--frames 10] [--work /tmp/lsvos_soft_vote]
"""

from __future__ import annotations

import argparse
import shutil
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.masks import MaskSet, Track
from pipeline.core.vote import VoteSpec, vote_mask_sets

SIZE = (360, 640)
EXPRESSIONS = 4
SOURCES = ("a", "b", "c")


def write_sources(work: Path, videos: int, frames: int) -> list[MaskSet]:
    """Sources whose probabilities share a smooth base map, each with its own noise."""
    rng = np.random.default_rng(0)
    sets = [MaskSet(work / name, "rle") for name in SOURCES]
    ids = tuple(f"{5 * k:05d}" for k in range(frames))
    for v in range(videos):
        video = f"vid{v:02d}"
        for e in range(EXPRESSIONS):
            base = rng.random((frames, 9, 16)).astype(np.float32)
            for ms in sets:
                low = np.clip(base + 0.3 * rng.standard_normal(base.shape), 0, 1)
                probs = np.stack(
                    [cv2.resize(f, SIZE[::-1], interpolation=cv2.INTER_LINEAR) for f in low]
                ).astype(np.float16)
                ms.write(video, str(e), Track(ids, probs > 0.5, rng.random(frames), probs))
        for ms in sets:
            ms.mark_complete(video)
    return sets


def run(sources: list[MaskSet], out: Path, spec: VoteSpec, keep: bool, videos) -> tuple:
    shutil.rmtree(out, ignore_errors=True)
    tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    vote_mask_sets(sources, out, spec, videos=videos, storage="rle", keep_probs=keep)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return wall, cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lsvos_soft_vote"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    sources = write_sources(args.work / "sources", args.videos, args.frames)
    runs = [
        ("hard, score rule (baseline)", VoteSpec(SOURCES, pairs=True, key_frame_source="a"), 0),
        (
            "soft 0.5, score rule",
            VoteSpec(SOURCES, pairs=True, mode="soft", key_frame_source="a"),
            0,
        ),
        ("soft 0.5, keeping probabilities", VoteSpec(SOURCES, pairs=True, mode="soft"), 1),
        (
            "hard, mean_probability rule",
            VoteSpec(SOURCES, pairs=True, key_frame_rule="mean_probability"),
            0,
        ),
        ("hard, agreement rule", VoteSpec(SOURCES, pairs=True, key_frame_rule="agreement"), 0),
    ]
    every = sources[0].videos()
    print(
        f"{args.videos} videos x {EXPRESSIONS} expressions x {args.frames} frames at "
        f"{SIZE[0]}x{SIZE[1]}, {len(SOURCES)} sources, pairs pooled, 1 process"
    )
    print("| run | wall | CPU | CPU vs baseline | peak, 1 video | peak, all videos |")
    print("|---|---|---|---|---|---|")
    base_cpu = None
    for name, spec, keep in runs:
        run(sources, args.work / "warm", spec, bool(keep), every[:1])  # untraced warm-up
        _, _, one = run(sources, args.work / "one", spec, bool(keep), every[:1])
        wall, cpu, peak = run(sources, args.work / "all", spec, bool(keep), every)
        base_cpu = base_cpu or cpu
        print(
            f"| {name} | {wall:.2f} s | {cpu:.2f} s | {cpu / base_cpu:.2f}x | "
            f"{one / 2**20:.0f} MiB | {peak / 2**20:.0f} MiB |"
        )
    print("load average:", Path("/proc/loadavg").read_text().strip())


if __name__ == "__main__":
    main()
