"""Voting 5 sources over a 720p synthetic split, against the winners' way in the same run.

Baseline (``soc_test/test_ensemble_*.py``, lsvos2023.md section 4): one process; per pair of
expressions, every source's PNGs read with PIL (``convert('P') == 255``), summed, thresholded,
each output frame written with PIL. Ours: ``pipeline.core.vote.vote_mask_sets`` on the same PNG
folders (one process with one codec thread, one process with a thread per core, two
processes) and on RLE mask sets holding the same masks. Floor: plain PNG decode of every
source frame the vote reads and encode of every output frame, one process, one thread, with
the codec the pipeline uses. Every run is repeated in interleaved rounds (the machine is
shared: medians and per-round ratios are shown, with the load average of each round). Outputs
are checked equal to the baseline's.

    python bench/vote_720p.py [--videos 8] [--rounds 3] [--threads N] [--work /tmp/lsvos_bench]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import threading
import time
import tracemalloc
from glob import glob
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vote_common import make_split, write_sources

import pipeline.core.masks.codec as codec
from pipeline.core.io import encode_mask_png, read_mask_png
from pipeline.core.masks import MaskSet
from pipeline.core.parallel import available_cores
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
    """(wall seconds, CPU seconds of this process, all its threads, and its finished
    children)."""
    before = _cpu()
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start, _cpu() - before


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def with_threads(threads: int, fn, *args, **kwargs):
    """Run ``fn`` with OpenCV's thread count (the PNG codec's threads, see
    ``pipeline.core.masks.codec``) at ``threads``, then back to 1."""
    cv2.setNumThreads(threads)
    try:
        return fn(*args, **kwargs)
    finally:
        cv2.setNumThreads(1)


def check_identical(dest: Path, baseline: Path, meta: dict, label: str) -> None:
    """Every voted frame equal to the winners' output frame."""
    fused = MaskSet(dest)
    for video, exps in meta.items():
        for exp in exps:
            track = fused.read(video, exp)
            for fid, mask in zip(track.frame_ids, track.masks, strict=True):
                ref = read_mask_png(baseline / video / exp / f"{fid}.png")
                assert np.array_equal(mask, ref), (label, video, exp, fid)


def parallel_share(sources: list[Path], dest: Path, spec: VoteSpec) -> tuple[float, float]:
    """(CPU seconds inside the codec's per-frame tasks, CPU seconds of the whole vote) of one
    vote on one codec thread: the part a thread per core runs side by side, and the rest."""
    inside = [0.0]
    real = codec._run_in_order

    def counted(tasks, threads):
        before = time.process_time()
        try:
            return real(tasks, threads)
        finally:
            inside[0] += time.process_time() - before

    codec._run_in_order = counted
    try:
        _, total = with_threads(1, timed, vote_mask_sets, sources, dest, spec)
    finally:
        codec._run_in_order = real
    return inside[0], total


def cores_obtained(threads: int, seconds: float = 2.0) -> float:
    """CPU seconds per wall second that ``threads`` threads of GIL-free numpy work get right
    now: what parallel decoding can gain on this machine at this load (a free 2-core machine
    gives 2.0 for 2 threads; a quota or a crowd gives less)."""
    data = np.random.default_rng(0).random(1_000_000)
    stop = time.perf_counter() + seconds

    def spin() -> None:
        while time.perf_counter() < stop:
            np.sort(data)

    workers = [threading.Thread(target=spin) for _ in range(threads)]
    cpu, start = time.process_time(), time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (time.process_time() - cpu) / (time.perf_counter() - start)


def median(values: list[float]) -> float:
    return float(np.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lsvos_bench"))
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of every run (medians shown)"
    )
    parser.add_argument(
        "--threads", type=int, default=available_cores(), help="codec threads of the threaded runs"
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)
    ds = make_split(args.work / "synth720", args.videos)
    sources = write_sources(ds, args.work / "sources")
    meta = {v.id: [e.id for e in ds.expressions(v.id)] for v in ds.videos()}
    n_out = sum(v.num_frames * len(meta[v.id]) for v in ds.videos())
    print(
        f"{len(ds)} videos at 720p, {n_out} output frames, {len(sources)} sources "
        f"({5 * n_out} source frames read); {args.rounds} interleaved rounds, "
        f"{args.threads} codec threads in the threaded runs, {available_cores()} cores"
    )
    out = args.work / "out"
    shutil.rmtree(out, ignore_errors=True)
    png_sources = [s["png"] for s in sources]
    rle_sources = [s["rle"] for s in sources]
    spec = VoteSpec(tuple(f"model{i}" for i in range(5)), pairs=True)
    t = args.threads
    runs = {  # label -> (sources, processes, codec threads per process)
        "png sources, 1 process, 1 thread": (png_sources, 1, 1),
        f"png sources, 1 process, {t} threads": (png_sources, 1, t),
        "png sources, 2 processes": (png_sources, 2, 1),
        "rle sources, 1 process, 1 thread": (rle_sources, 1, 1),
        "rle sources, 2 processes": (rle_sources, 2, 1),
    }
    times: dict[str, list[tuple[float, float]]] = {
        "baseline": [],
        "floor": [],
        **{label: [] for label in runs},
    }
    obtained = {n: cores_obtained(n) for n in (1, t)}
    print(
        "cores obtained by GIL-free numpy threads: "
        + ", ".join(f"{n} thread(s) {c:.2f}" for n, c in obtained.items()),
        flush=True,
    )
    loads: list[str] = []
    for r in range(args.rounds):
        loads.append(Path("/proc/loadavg").read_text().split(" ", 3)[:3])
        shutil.rmtree(out / "baseline", ignore_errors=True)
        times["baseline"].append(timed(winners_vote, png_sources, meta, out / "baseline"))
        shutil.rmtree(out / "floor", ignore_errors=True)
        times["floor"].append(timed(codec_floor, png_sources, meta, out / "floor"))
        for label, (srcs, workers, threads) in runs.items():
            dest = out / label.replace(" ", "_").replace(",", "")
            shutil.rmtree(dest, ignore_errors=True)
            times[label].append(
                with_threads(threads, timed, vote_mask_sets, srcs, dest, spec, workers=workers)
            )
            if r == 0:
                check_identical(dest, out / "baseline", meta, label)
        base = times["baseline"][-1]
        ours = times[f"png sources, 1 process, {t} threads"][-1]
        print(
            f"round {r + 1}: baseline {base[0]:.2f} s wall / {base[1]:.2f} s cpu; png, {t} "
            f"threads {ours[0]:.2f} s / {ours[1]:.2f} s: {base[0] / ours[0]:.2f}x wall; "
            f"load {' '.join(loads[-1])}",
            flush=True,
        )
    loads.append(Path("/proc/loadavg").read_text().split(" ", 3)[:3])

    # what a thread per core can overlap: the codec's per-frame tasks (Amdahl's law)
    shutil.rmtree(out / "share", ignore_errors=True)
    in_tasks, total_cpu = parallel_share(png_sources, out / "share", spec)

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
    peaks_png = []
    for n_videos in (1, len(ds)):  # the threaded PNG path: flat in the number of videos too
        chosen = [v.id for v in ds.videos()][-n_videos:]
        tracemalloc.start()
        with_threads(
            t, vote_mask_sets, png_sources, out / f"mem_png{n_videos}", spec, videos=chosen
        )
        peaks_png.append(tracemalloc.get_traced_memory()[1] / 1e6)
        tracemalloc.stop()

    base_wall = median([w for w, _ in times["baseline"]])
    base_cpu = median([c for _, c in times["baseline"]])
    floor_wall = median([w for w, _ in times["floor"]])
    floor_cpu = median([c for _, c in times["floor"]])
    print(f"medians of {args.rounds} rounds (per-round ratios in brackets):")
    for label, values in times.items():
        wall, cpu = median([w for w, _ in values]), median([c for _, c in values])
        row = f"{label:<36} wall {wall:7.2f} s ({1e3 * wall / n_out:5.2f} ms/frame)"
        if "processes" in label:  # worker processes are the forkserver's: their CPU is not ours
            row += " " * 15
        else:
            row += f", cpu {cpu:7.2f} s"
        if label != "baseline":
            ratios = [b[0] / v[0] for b, v in zip(times["baseline"], values, strict=True)]
            row += f"  vs baseline {base_wall / wall:4.2f}x wall"
            row += f" [{', '.join(f'{x:.2f}' for x in ratios)}]"
            if "processes" not in label:
                row += f", {base_cpu / cpu:4.2f}x cpu"
            if label != "floor":
                row += f"; vs floor {wall / floor_wall:4.2f}x wall"
                if "processes" not in label:
                    row += f", {cpu / floor_cpu:4.2f}x cpu"
        print(row)
    print(
        f"peak traced memory: {peak_all:.1f} MB voting all {len(ds)} videos from RLE, "
        f"{max(single):.1f} MB for the largest single video (min {min(single):.1f} MB); "
        f"threaded PNG sources: {peaks_png[0]:.1f} MB for the last video alone, "
        f"{peaks_png[1]:.1f} MB for all {len(ds)}"
    )
    serial = total_cpu - in_tasks
    projected = serial + in_tasks / available_cores()
    print(
        f"PNG sources, one codec thread: {in_tasks:.2f} s of {total_cpu:.2f} s CPU in the "
        f"codec's per-frame tasks ({100 * in_tasks / total_cpu:.0f}%); on {available_cores()} "
        f"free cores that gives at best {projected:.2f} s wall, {base_cpu / projected:.2f}x the "
        "baseline's CPU time (its wall time on a free core)"
    )
    print("outputs identical to the baseline's: yes")
    print(f"load average at the start of each round, then at the end: {loads}")


if __name__ == "__main__":
    main()
