"""Cutie and SAM 2 speed: all expressions of a video in one session vs one expression at a time.

Both run the RVOS challenge's bidirectional protocol (key frame, forward then backward) through
:func:`vos.protocol.propagate_video` on one synthetic video with 4 expressions, with the same
random weights:

- baseline: the official predictors' way, one expression at a time - a session of its own per
  expression and sweep, every frame encoded again for every expression (the port equals the
  official code on its parity cases, tests/parity/{cutie,sam2}_*);
- ours: the expressions as tracks of one session, each frame encoded once for all of them and
  kept between the sweeps (the feature cache).

Prints seconds per video frame for both, the ratio, the share of equal output pixels (1.0: the
sharing changes nothing), and the machine's load average.

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

    with torch.inference_mode():
        start = time.perf_counter()
        baseline = propagate_video(engine, video, masks, keys, one_at_a_time)
        baseline_s = time.perf_counter() - start
        start = time.perf_counter()
        ours = propagate_video(engine, video, masks, keys, ProtocolConfig())
        ours_s = time.perf_counter() - start

    equal = sum(int((baseline[e].masks == ours[e].masks).sum()) for e in masks)
    total = sum(m.numel() for m in masks.values())
    size = f", SAM 2 input {args.image_size}" if args.engine.startswith("sam2") else ""
    print(
        f"{args.engine} {height}x{width}{size}, {args.frames} frames, {args.expressions} "
        f"expressions (key frames {sorted(keys.values())}), {args.threads} threads, load "
        f"average {os.getloadavg()[0]:.1f}"
    )
    print(f"  baseline (one expression at a time): {baseline_s / args.frames:.3f} s per frame")
    print(f"  ours (one session, shared encodings): {ours_s / args.frames:.3f} s per frame")
    print(f"  speed-up {baseline_s / ours_s:.2f}x, equal output pixels {equal / total:.5f}")


if __name__ == "__main__":
    main()
