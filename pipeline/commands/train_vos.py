"""``lsvos train-vos``: train a small AOT / DeAOT or Cutie engine on a Ref-YouTube-VOS-layout
folder.

Example (the first stage of the shipped engines; all four stages, and the Cutie run:
weights/README.md)::

    lsvos data synth --out data/synth
    lsvos train-vos --model aot_tiny --data data/synth --out runs/aot_tiny.safetensors
    lsvos train-vos --model deaot_tiny --data data/synth --out runs/deaot_tiny.safetensors
    lsvos train-vos --model cutie_tiny --data data/synth --out runs/cutie_tiny.safetensors

Training resumes from ``--work`` (default ``<out>.work/``), where a checkpoint is written
atomically every ``--checkpoint-every`` steps, beside a JSON-lines log. The weights are written
as a project weights file (``pipeline.adapters.weights``: safetensors + the engine spec in
its metadata) and scored on ``--eval-split``: J&F of propagating the ground-truth key-frame
mask, and of a simulated noisy fused mask before and after propagation
(``pipeline.training.vos_eval``). The run itself: ``pipeline.training.vos_run``; the
training loops: ``vos.train`` (AOT / DeAOT) and ``vos.cutie.train`` (Cutie).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.training.runs import add_run_arguments, append_log, command_line, work_folder

NAME = "train-vos"
HELP = "train a small AOT / DeAOT / Cutie propagation engine on a Ref-YouTube-VOS-layout dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="aot_tiny", help="variant (aot_tiny, deaot_tiny, cutie_tiny, ...)"
    )
    parser.add_argument("--data", type=Path, help="dataset root (e.g. from lsvos data synth)")
    parser.add_argument("--out", type=Path, required=True, help="output weights (.safetensors)")
    parser.add_argument("--split", default="train", help="training split (default train)")
    parser.add_argument(
        "--layers",
        type=int,
        help="propagation layers, Cutie: object-transformer blocks (default: the variant's)",
    )
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    parser.add_argument("--batch-size", type=int, default=6, help="clips per step (default 6)")
    parser.add_argument("--frames", type=int, default=4, help="frames per clip (default 4)")
    parser.add_argument("--crop", type=int, default=113, help="square crop side (default 113)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="frames are enlarged by this factor for training, and the engine runs at this "
        "test-time scale (recorded in the weights; default 1.0; Cutie: 1.0 only)",
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument(
        "--init",
        type=Path,
        help="start from the weights of this engine file (fine-tuning; its spec is used, "
        "--model and --layers are ignored); a resumed --work checkpoint takes precedence",
    )
    parser.add_argument("--eval-videos", type=int, help="score only the first N videos")
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train (or, with ``--eval-only``, score) the engine (``pipeline.training.vos_run``)."""
    import torch

    torch.set_num_threads(max(1, args.threads))
    if args.data is None:
        raise UserError("--data is required")
    from pipeline.training.vos_engines import starting_point
    from pipeline.training.vos_run import TrainSettings, evaluate_engine, train_engine

    eval_root = args.eval_data or args.data
    if args.eval_only:
        evaluate_engine(
            args.out, eval_root, args.eval_split, seed=args.seed, max_videos=args.eval_videos
        )
        return 0
    start = starting_point(args.model, args.layers, args.init)
    work = work_folder(args)
    settings = TrainSettings(
        split=args.split,
        steps=args.steps,
        batch_size=args.batch_size,
        frames=args.frames,
        crop=args.crop,
        scale=args.scale,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    trained = train_engine(start, args.data, work, settings, command_line(args))
    trained.save(args.out)
    print(f"wrote {args.out}", flush=True)
    if not args.no_eval:
        scores = evaluate_engine(
            args.out, eval_root, args.eval_split, seed=args.seed, max_videos=args.eval_videos
        )
        append_log(work, {"eval": scores})
        trained.with_score(scores).save(args.out)
    return 0
