"""Memory on a long video: long-term memory with and without the cap, over 1000 frames.

One track propagated frame by frame (the session API, as the protocol drives it) through a
synthetic 1000-frame video; every ``--report`` frames the script records the bytes held by
the long-term memory, the process's resident memory and the time per frame. Each setting runs
in its own process so the peak resident sizes are independent. With ``--cap`` the memory
stops growing once the cap is reached (references are never dropped); without it, it grows
with every ``gap``-th frame, and so does the attention cost.

    python bench/vos_memory.py --variant deaot_tiny --frames 1000 --cap 8

``--engine cutie`` / ``--engine sam2``: the same 1000-frame video through a Cutie or SAM 2
session (random weights of a small spec: Cutie with narrow widths, SAM 2.1 Hiera-tiny at a
128-pixel input) with three tracks - one of two objects, two of one, all stepped together as
the protocol does (batched) - and, at the ``--marks`` frames (default 100, 500, 1000), the
session's memory bytes, the process's resident size and peak, and the Python heap
(tracemalloc: per-frame outputs kept on the session would show there and in RSS). Flat = no
growth between the marks beyond noise.

    python bench/vos_memory.py --engine cutie --frames 1000 --size 120x160 --threads 1
    python bench/vos_memory.py --engine sam2 --frames 1000 --size 120x160 --threads 1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
import tracemalloc
from typing import Any


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run(variant: str, frames: int, size: tuple[int, int], gap: int, cap: int | None,
        report: int, threads: int, queue: mp.Queue) -> None:  # fmt: skip
    import torch

    from vos.deaot import build_network
    from vos.session import Propagator
    from vos.variants import get_variant

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    network = build_network(get_variant(variant)).eval()
    session = Propagator(network, long_term_gap=gap, long_term_cap=cap).new_session()
    h, w = size
    g = torch.Generator().manual_seed(0)
    background = torch.randint(0, 255, (3, h, w), generator=g, dtype=torch.uint8)

    def frame(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = background.roll(t % w, dims=2).clone()
        mask = torch.zeros(h, w, dtype=torch.bool)
        y, x = (h // 4 + t) % (h // 2), (w // 4 + 2 * t) % (w // 2)
        mask[y : y + h // 4, x : x + w // 4] = True
        img[:, mask] = torch.tensor([220, 40, 40], dtype=torch.uint8)[:, None]
        return img, mask

    img, mask = frame(0)
    session.add_reference(img, mask)
    rows = []
    start = time.perf_counter()
    for t in range(1, frames):
        session.step(frame(t)[0])
        if t % report == 0 or t == frames - 1:
            elapsed = time.perf_counter() - start
            rows.append((t, session.memory_bytes() / 2**20, rss_mib(), elapsed / report))
            start = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((rows, peak, session.long_term_frames("main")))


def synthetic_frame(t: int, background: Any, objects: int = 2) -> tuple[Any, Any]:
    """Frame ``t`` of the engines' video: the background rolled by ``t`` pixels with
    ``objects`` moving rectangles -> (3 x H x W uint8, H x W int64 ids)."""
    import torch

    _, h, w = background.shape
    img = background.roll(t % w, dims=2).clone()
    labels = torch.zeros(h, w, dtype=torch.long)
    for k in range(objects):
        y = (h // 4 + (k + 1) * t + 17 * k) % (h // 2)
        x = (w // 4 + 2 * t + 41 * k) % (w // 2)
        labels[y : y + h // 4, x : x + w // 4] = k + 1
        img[:, labels == k + 1] = torch.tensor([220, 40 + 120 * k, 40], dtype=torch.uint8)[:, None]
    return img, labels


def small_engine(engine: str) -> Any:
    """A random-weight engine of a small spec (seeded)."""
    import torch

    torch.manual_seed(0)
    if engine == "cutie":
        from vos.cutie.engine import CutieEngine
        from vos.cutie.network import CutieNetwork
        from vos.cutie.spec import CutieSpec

        spec = CutieSpec(
            name="bench_small", pixel_encoder="resnet18", ms_dims=(256, 128, 64), pixel_dim=64,
            key_dim=32, value_dim=64, sensory_dim=64, embed_dim=64, num_queries=8, num_blocks=1,
            num_heads=2, ff_dim=128, up_dims=(64, 32, 32),
        )  # fmt: skip
        return CutieEngine(CutieNetwork(spec))
    from vos.sam2.engine import Sam2Engine
    from vos.sam2.model import Sam2Model
    from vos.sam2.spec import get_sam2_variant

    model = Sam2Model(get_sam2_variant("sam2.1_hiera_tiny", image_size=128))
    with torch.no_grad():  # random heads would otherwise call every object absent
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(2.0)
    return Sam2Engine(model)


def run_engine(engine: str, frames: int, size: tuple[int, int], marks: list[int], threads: int,
               queue: mp.Queue) -> None:  # fmt: skip
    """Propagate three tracks of a :func:`small_engine` session through ``frames`` frames;
    puts (rows of (frame, session MiB, RSS MiB, peak RSS MiB, Python heap MiB, s / frame),
    encoder calls) on ``queue``."""
    import torch

    torch.set_num_threads(threads)
    session = small_engine(engine).new_session()
    g = torch.Generator().manual_seed(0)
    background = torch.randint(0, 255, (3, *size), generator=g, dtype=torch.uint8)
    tracemalloc.start()
    rows = []
    start, last = time.perf_counter(), 0
    with torch.inference_mode():
        img, labels = synthetic_frame(0, background)
        enc = session.encode(img)
        session.add_reference(enc, labels, track="pair", frame_step=0)
        session.add_reference(enc, labels == 1, track="first", frame_step=0)
        session.add_reference(enc, labels == 2, track="second", frame_step=0)
        for t in range(1, frames):
            outputs = session.step(session.encode(synthetic_frame(t, background)[0]))
            assert len(outputs) == 3
            del outputs
            if t + 1 in marks:
                elapsed = (time.perf_counter() - start) / (t - last)
                heap = tracemalloc.get_traced_memory()[0] / 2**20
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                rows.append((t + 1, session.memory_bytes() / 2**20, rss_mib(), peak, heap, elapsed))
                start, last = time.perf_counter(), t
    queue.put((rows, session.stats["encoder_calls"]))


def engine_main(args: argparse.Namespace) -> None:
    size = tuple(int(v) for v in args.size.split("x"))
    marks = sorted({min(int(m), args.frames) for m in args.marks.split(",")})
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(
        target=run_engine, args=(args.engine, args.frames, size, marks, args.threads, queue)
    )
    proc.start()
    rows, encoder_calls = queue.get()
    proc.join()
    print(
        f"{args.engine} (small random spec) {args.size}, {args.frames} frames, 3 tracks (4 "
        f"objects), {encoder_calls} encodings, {args.threads} threads, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print("    frame  session MiB  RSS MiB  peak RSS MiB  Python heap MiB  s/frame")
    for t, held, rss, peak, heap, spf in rows:
        print(f"    {t:5d}  {held:11.2f}  {rss:7.0f}  {peak:12.0f}  {heap:15.2f}  {spf:7.4f}")
    first, final = rows[0], rows[-1]
    print(
        f"  frame {final[0]} / frame {first[0]}: session memory {final[1] / first[1]:.3f}x, "
        f"RSS {final[2] - first[2]:+.1f} MiB, peak RSS {final[3] - first[3]:+.1f} MiB, Python "
        f"heap {final[4] - first[4]:+.3f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("deaot", "cutie", "sam2"), default="deaot")
    parser.add_argument("--marks", default="100,500,1000", help="frames to report (Cutie, SAM 2)")
    parser.add_argument("--variant", default="deaot_tiny")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", default="240x320")
    parser.add_argument("--gap", type=int, default=5)
    parser.add_argument("--cap", type=int, default=8)
    parser.add_argument("--report", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.engine != "deaot":
        engine_main(args)
        return
    size = tuple(int(v) for v in args.size.split("x"))
    ctx = mp.get_context("spawn")
    results = {}
    for cap in (args.cap, None):
        queue = ctx.Queue()
        proc = ctx.Process(
            target=run,
            args=(args.variant, args.frames, size, args.gap, cap, args.report, args.threads, queue),
        )
        proc.start()
        results[cap] = queue.get()
        proc.join()
    print(f"{args.variant} {args.size}, {args.frames} frames, long-term gap {args.gap}")
    for cap, (rows, peak, lt_frames) in results.items():
        label = f"cap {cap}" if cap is not None else "no cap"
        print(f"  {label}: {lt_frames} long-term frames at the end, peak RSS {peak:.0f} MiB")
        print("    frame  long-term MiB  RSS MiB  s/frame")
        for t, lt, rss, spf in rows:
            print(f"    {t:5d}  {lt:13.2f}  {rss:7.0f}  {spf:7.4f}")
    capped, uncapped = results[args.cap][0], results[None][0]
    print(
        f"  long-term memory, last / first report: with cap {capped[-1][1] / capped[0][1]:.2f}x, "
        f"without {uncapped[-1][1] / uncapped[0][1]:.2f}x; time per frame last / first: with cap "
        f"{capped[-1][3] / capped[0][3]:.2f}x, without {uncapped[-1][3] / uncapped[0][3]:.2f}x"
    )


if __name__ == "__main__":
    main()
