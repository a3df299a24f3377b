"""Peak memory of the demo (``lsvos run``, the demo recipe on the synthetic benchmark).

Each setting runs the whole demo, as ``lsvos run runtime.output_root=<fresh folder>`` does (a
private Prefect server, the thread runner, every node computed), in its own process, so the peak
resident sizes are independent: ``ru_maxrss`` of the flow process, and of its children (the
Prefect server). The baseline (setting ``old``) is the same run with the old behaviour switched
back on in that process: the Video Swin shifted-window masks cached per padded video size
(``functools.lru_cache(maxsize=32)``) and attended a whole video's windows at once, the
deformable-attention sampling of all queries at once, model tasks side by side on the thread
runner's two workers, and no ``malloc_trim`` after a task. The script prints both peaks, their
ratio, the machine load before and after, and whether the two submission zips are
byte-identical (they must be: no change alters an output).

    python bench/demo_memory.py                 # new and old, about 6 minutes on 2 CPU cores
    python bench/demo_memory.py --settings new  # one run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = "DEMO-MEMORY-RESULT "


def enable_old_behaviour() -> None:
    """Switch the memory fixes off in this process (outputs stay the same)."""
    import contextlib
    import functools

    import models.common.deform_attn as deform_attn
    import models.shared.video_swin as video_swin
    import pipeline.core.memory as memory

    video_swin._shift_mask = functools.lru_cache(maxsize=32)(video_swin._shift_mask)  # type: ignore[assignment]
    video_swin._WINDOW_CHUNK = 512  # whole videos' windows at once (the old bound)
    deform_attn.SAMPLE_CHUNK_ELEMENTS = sys.maxsize  # one chunk: every query at once
    memory._MODEL_TASK = contextlib.nullcontext()  # type: ignore[assignment]  # side by side
    memory.release_freed_memory = lambda: False  # freed heap stays with the process


def child(setting: str, out: Path) -> None:
    """Run the demo here and print the peaks and the submission's sha256 as one JSON line."""
    sys.path.insert(0, str(ROOT))
    if setting == "old":
        enable_old_behaviour()
    from pipeline.cli import main

    start = time.perf_counter()
    code = main(["run", f"runtime.output_root={out}"])
    seconds = time.perf_counter() - start
    zips = sorted((out / "runs").glob("*/submission.zip"))
    digest = hashlib.sha256(zips[-1].read_bytes()).hexdigest() if zips else None
    record = {
        "setting": setting,
        "exit": code,
        "seconds": round(seconds, 1),
        "flow_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "children_peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "sha256": digest,
    }
    print(RESULT + json.dumps(record), flush=True)


def run_setting(setting: str, work: Path) -> dict[str, object]:
    """One demo run in a fresh process and a fresh output folder."""
    out = work / setting / "outputs"
    command = [sys.executable, __file__, "--child", setting, "--out", str(out)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"the {setting} run failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(RESULT) :])


def gib(kib: object) -> str:
    return f"{int(kib) / 2**20:.2f} GiB"  # type: ignore[call-overload]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="new,old", help="comma-separated: new, old")
    parser.add_argument("--work", type=Path, default=None, help="output folders (default: temp)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.out)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="lsvos-bench-demo-memory-"))
    print(f"machine: {os.cpu_count()} CPUs, load average before {os.getloadavg()}")
    results = [run_setting(s.strip(), work) for s in args.settings.split(",") if s.strip()]
    print(f"load average after {os.getloadavg()}; output folders under {work}")
    print("| setting | flow process peak RSS | children (server) | wall | submission sha256 |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['setting']} | {gib(r['flow_peak_kib'])} | {gib(r['children_peak_kib'])} "
            f"| {r['seconds']} s | {str(r['sha256'])[:16]} |"
        )
    by_name = {r["setting"]: r for r in results}
    if {"new", "old"} <= set(by_name):
        new, old = by_name["new"], by_name["old"]
        ratio = int(old["flow_peak_kib"]) / int(new["flow_peak_kib"])  # type: ignore[call-overload]
        same = new["sha256"] == old["sha256"]
        print(f"peak RSS old / new: {ratio:.2f}x; submissions identical: {same}")


if __name__ == "__main__":
    main()
