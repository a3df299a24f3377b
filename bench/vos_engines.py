"""Cutie and SAM 2 speed: all expressions of a video in one session vs one expression at a time.

Both run the RVOS challenge's bidirectional protocol (key frame, forward then backward) through
:func:`vos.protocol.propagate_video` on one synthetic video with 4 expressions, with the same
random weights:

- baseline: the official predictors' way, one expression at a time - a session of its own per
  expression and sweep, every frame encoded again for every expression (the port equals the
  official code on its parity cases, tests/parity/{cutie,sam2}_*);
- ours: the expressions as tracks of one session, each frame encoded once for all of them and
  kept between the sweeps (the feature cache), the tracks' network work batched (Cutie: readout
  fusion, object transformer, decoder, mask encoder; SAM 2: memory attention, heads, memory
  encoder); and the same with the tracks stepped one at a time, to measure the batching alone.

Prints seconds per video frame (wall and process CPU time: the machine is shared, CPU time is
the steadier figure) for each, the ratios, the share of output pixels equal to the baseline's
(1.0: the sharing changes nothing), and the machine's load average.

    python bench/vos_engines.py --engine cutie_small --size 240x432 --frames 10
    python bench/vos_engines.py --engine sam2.1_hiera_tiny --image-size 512 --frames 8
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vos_propagation import make_video

from vos.protocol import ProtocolConfig, propagate_video

ENGINES = ("cutie_small", "cutie_base", "sam2.1_hiera_tiny", "sam2.1_hiera_large")


def build(engine: str, image_size: int):
    """A random-weight engine (seeded); SAM 2's object-score bias set positive so that random
    heads segment instead of reporting 'no object' on every frame (as its parity cases do)."""
    torch.manual_seed(0)
    if engine.startswith("cutie"):
        from vos.cutie.engine import CutieEngine
        from vos.cutie.network import CutieNetwork
        from vos.cutie.spec import get_cutie_variant

        return CutieEngine(CutieNetwork(get_cutie_variant(engine.split("_")[1])))
    from vos.sam2.engine import Sam2Engine
    from vos.sam2.model import Sam2Model
    from vos.sam2.spec import get_sam2_variant

    model = Sam2Model(get_sam2_variant(engine, image_size=image_size))
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(2.0)
    return Sam2Engine(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=ENGINES, default="cutie_small")
    parser.add_argument("--size", default="240x432", help="HxW of the frames")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--expressions", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=1024, help="SAM 2's square input")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.split("x"))
    engine = build(args.engine, args.image_size)
    video, masks, keys = make_video(args.frames, height, width, args.expressions)
    one_at_a_time = ProtocolConfig(batch_expressions=False, dedupe=False, feature_cache_bytes=0)

    runs = {
        "baseline (one expression at a time)": (one_at_a_time, True),
        "ours, tracks stepped one at a time": (ProtocolConfig(), False),
        "ours (one session, shared encodings, batched tracks)": (ProtocolConfig(), True),
    }
    outputs, wall, cpu = {}, {}, {}
    with torch.inference_mode():
        for name, (config, batched) in runs.items():
            engine.batch_tracks = batched
            start, start_cpu = time.perf_counter(), time.process_time()
            outputs[name] = propagate_video(engine, video, masks, keys, config)
            wall[name] = time.perf_counter() - start
            cpu[name] = time.process_time() - start_cpu

    baseline_name, unbatched_name, ours_name = runs
    total = sum(m.numel() for m in masks.values())
    size = f", SAM 2 input {args.image_size}" if args.engine.startswith("sam2") else ""
    print(
        f"{args.engine} {height}x{width}{size}, {args.frames} frames, {args.expressions} "
        f"expressions (key frames {sorted(keys.values())}), {args.threads} threads, load "
        f"average {os.getloadavg()[0]:.1f}"
    )
    for name in runs:
        equal = sum(
            int((outputs[baseline_name][e].masks == outputs[name][e].masks).sum()) for e in masks
        )
        print(
            f"  {name}: {wall[name] / args.frames:.3f} s per frame (CPU "
            f"{cpu[name] / args.frames:.3f} s), equal output pixels {equal / total:.5f}"
        )
    print(
        f"  speed-up {wall[baseline_name] / wall[ours_name]:.2f}x wall, "
        f"{cpu[baseline_name] / cpu[ours_name]:.2f}x CPU time; batching the tracks alone: "
        f"{cpu[unbatched_name] / cpu[ours_name]:.2f}x CPU time"
    )


if __name__ == "__main__":
    main()
