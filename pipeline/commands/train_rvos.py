"""``lsvos train-rvos``: train a tiny RVOS model on a Ref-YouTube-VOS-layout folder.

Example (the shipped SgMg)::

    lsvos data synth --out data/synth
    lsvos train-rvos --model sgmg-tiny --data data/synth --out weights/sgmg_tiny.safetensors

Models are registered in :mod:`pipeline.training.rvos_models` (``MODELS``; ``--list`` shows
them). Training resumes from ``--work`` (default ``<out>.work/``), where a checkpoint is written
atomically every ``--checkpoint-every`` steps, with a JSON-lines log. At the end the weights are
written beside their word-level tokenizer and scored on ``--eval-split`` (J&F) at the test-time
short side (``--test-short-side``), which the file records for the pipeline's producers.

``--init FILE`` fine-tunes a file this command wrote (its model, config and tokenizer; the
commands that trained it are carried into the new file's metadata); ``--frames``,
``--short-sides`` and ``--max-size`` change the training clips from the model's defaults.

The run itself is :func:`pipeline.training.rvos_run.train_rvos`; this module parses, calls and
prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.training.runs import add_run_arguments, command_line, work_folder

NAME = "train-rvos"
HELP = "train a tiny RVOS model (SgMg, ...) on a Ref-YouTube-VOS-layout dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the trainable models")
    parser.add_argument("--data", type=Path, help="dataset root (e.g. from lsvos data synth)")
    parser.add_argument("--out", type=Path, help="output weights (.safetensors)")
    parser.add_argument("--split", default="train", help="training split (default train)")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the model's)")
    parser.add_argument("--batch-size", type=int, help="clips per step (default: the model's)")
    parser.add_argument("--lr", type=float, help="scale every learning rate to this base rate")
    parser.add_argument(
        "--init",
        type=Path,
        help="fine-tune the weights of this file (written by train-rvos: its model, config and "
        "tokenizer are used); a resumed --work checkpoint takes precedence",
    )
    parser.add_argument("--frames", type=int, help="frames per training clip (default: model's)")
    parser.add_argument(
        "--short-sides",
        type=_sizes,
        help="comma-separated training short sides, one drawn per clip (default: the model's)",
    )
    parser.add_argument("--max-size", type=int, help="training long-side cap (default: model's)")
    parser.add_argument(
        "--test-short-side",
        type=int,
        help="short side the model is scored and run at, recorded in the weights (default: "
        "the --init / --out file's, else the model's)",
    )
    add_run_arguments(parser)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated integers: {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes


def run(args: argparse.Namespace) -> int:
    """List the models, score ``--out`` (``--eval-only``) or train it
    (:mod:`pipeline.training.rvos_run`)."""
    from pipeline.training.rvos_models import registered_models
    from pipeline.training.rvos_run import eval_line, evaluate_file

    if args.list:
        for name, spec in sorted(registered_models().items()):
            print(f"{name:20s} {spec.description}")
        return 0
    if args.out is None or (args.data is None and not args.eval_only):
        raise UserError("--out and --data are required (or --list)")
    import torch

    torch.set_num_threads(max(1, args.threads))
    if args.eval_only:
        if args.data is None:
            raise UserError("--eval-only needs --data")
        root = args.eval_data or args.data
        result = evaluate_file(args.out, root, args.eval_split, args.test_short_side)
        print(eval_line(args.eval_split, result))
        return 0
    if args.model is None and args.init is None:
        raise UserError("--model or --init is required (see --list)")
    train(args)
    return 0


def train(args: argparse.Namespace) -> None:
    """Train ``--model`` (or ``--init``'s) with the command's options."""
    from pipeline.training.rvos_run import RVOSTrainSettings, starting_point, train_rvos

    start = starting_point(args.model, args.init, args.data)
    settings = RVOSTrainSettings(
        split=args.split,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        frames=args.frames,
        short_sides=args.short_sides,
        max_size=args.max_size,
        test_short_side=args.test_short_side,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    train_rvos(
        start,
        args.data,
        args.out,
        work_folder(args),
        settings,
        command_line(args),
        eval_root=None if args.no_eval else (args.eval_data or args.data),
        eval_split=args.eval_split,
    )
