"""Memory on a long video: long-term memory with and without the cap, over 1000 frames.

One track propagated frame by frame (the session API, as the protocol drives it) through a
synthetic 1000-frame video; every ``--report`` frames the script records the bytes held by
the long-term memory, the process's resident memory and the time per frame. Each setting runs
in its own process so the peak resident sizes are independent. With ``--cap`` the memory
stops growing once the cap is reached (references are never dropped); without it, it grows
with every ``gap``-th frame, and so does the attention cost.

    python bench/vos_memory.py --variant deaot_tiny --frames 1000 --cap 8
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="deaot_tiny")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", default="240x320")
    parser.add_argument("--gap", type=int, default=5)
    parser.add_argument("--cap", type=int, default=8)
    parser.add_argument("--report", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
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
