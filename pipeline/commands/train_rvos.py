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
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import InputFileError, UserError
from pipeline.training.runs import (
    add_run_arguments,
    append_log,
    command_line,
    join_history,
    save_checkpoint,
    split_history,
    work_folder,
)

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
    from pipeline.training.rvos_models import (
        evaluate,
        load_trained,
        registered_models,
    )

    if args.list:
        for name, spec in sorted(registered_models().items()):
            print(f"{name:20s} {spec.description}")
        return 0
    if args.out is None or (args.data is None and not args.eval_only):
        raise UserError("--out and --data are required (or --list)")
    torch.set_num_threads(max(1, args.threads))
    if args.eval_only:
        if args.data is None:
            raise UserError("--eval-only needs --data")
        trained = load_trained(args.out)
        root = args.eval_data or args.data
        producer = trained.producer(args.test_short_side)
        result = evaluate(producer, trained.tokenizer, root, args.eval_split)
        print(_eval_line(args.eval_split, result))
        return 0
    if args.model is None and args.init is None:
        raise UserError("--model or --init is required (see --list)")
    train(args)
    return 0


def _eval_line(split: str, result: Any) -> str:
    return (
        f"{split}: J&F {result.JF:.4f} (J {result.J:.4f}, F {result.F:.4f}) over "
        f"{result.expressions} expressions of {result.videos} videos, {result.seconds:.1f} s"
    )


def _starting_point(args: argparse.Namespace) -> dict[str, Any]:
    """The spec, config, tokenizer, initial state, short side and history of a run.

    From scratch: ``--model``'s defaults and a tokenizer over ``--data``'s vocabulary. With
    ``--init``: everything the file holds (a different ``--model`` is an error).
    """
    from pipeline.tokenize import build_word_tokenizer
    from pipeline.training.rvos_models import load_trained, model_spec

    if args.init is not None:
        initial = load_trained(args.init)
        if args.model is not None and args.model != initial.spec.name:
            raise UserError(
                f"--init {args.init} holds {initial.spec.name}, not --model {args.model}"
            )
        return {
            "spec": initial.spec,
            "config": initial.config,
            "tokenizer": initial.tokenizer,
            "state": initial.model.state_dict(),
            "short_side": initial.short_side,
            "history": split_history(initial.trained_with),
        }
    spec = model_spec(args.model)
    vocab_file = args.data / "vocabulary.txt"
    if not vocab_file.is_file():
        raise InputFileError(f"{vocab_file} not found: the word-level tokenizer is built from it")
    tokenizer = build_word_tokenizer(vocab_file.read_text().split())
    return {
        "spec": spec,
        "config": spec.default_config(tokenizer.vocab_size),
        "tokenizer": tokenizer,
        "state": None,
        "short_side": spec.test_short_side,
        "history": [],
    }


def _clip_config(args: argparse.Namespace, clips: Any) -> Any:
    """The model's clip settings with ``--frames``, ``--short-sides``, ``--max-size`` applied."""
    from dataclasses import replace

    changes = {
        "num_frames": args.frames,
        "short_sides": args.short_sides,
        "max_size": args.max_size,
    }
    return replace(clips, **{k: v for k, v in changes.items() if v is not None})


def _optim_config(args: argparse.Namespace, optim: Any) -> Any:
    """The model's optimiser settings with ``--steps`` (drops scaled along) and ``--lr``."""
    from dataclasses import replace

    if args.steps is not None:
        scale = args.steps / optim.steps
        optim = replace(
            optim,
            steps=args.steps,
            lr_drops=tuple(int(d * scale) for d in optim.lr_drops),
            warmup_steps=min(optim.warmup_steps, args.steps // 10),
        )
    if args.lr is not None:
        ratio = args.lr / optim.lr
        optim = replace(
            optim, lr=args.lr, lr_by_prefix={k: v * ratio for k, v in optim.lr_by_prefix.items()}
        )
    return optim


def train(args: argparse.Namespace) -> None:
    from models.shared.checkpoint import load_state_strict
    from models.train.loop import Trainer
    from pipeline.training.rvos_clips import RVOSClipDataset
    from pipeline.training.rvos_models import evaluate, save_trained

    start = _starting_point(args)
    spec, config, tokenizer = start["spec"], start["config"], start["tokenizer"]
    clips = _clip_config(args, spec.clips)
    dataset = RVOSClipDataset(args.data, tokenizer, clips, split=args.split, seed=args.seed)
    torch.manual_seed(args.seed)
    model = spec.build(config)
    optim = _optim_config(args, spec.optim)
    batch_size = args.batch_size or spec.batch_size
    short_side = args.test_short_side or start["short_side"]
    work = work_folder(args)
    trainer = Trainer(model, spec.loss, optim)
    last = work / "last.pt"
    if last.is_file():
        trainer.load_state_dict(torch.load(last, map_location="cpu", weights_only=True))
        print(f"resumed from {last} at step {trainer.step}")
    elif start["state"] is not None:
        load_state_strict(model, start["state"], what=str(args.init))
        print(f"initialised from {args.init}")
    command = join_history([*start["history"], command_line(args)])

    def on_log(step: int, mean: dict[str, float]) -> None:
        main_terms = {k: float(f"{v:.4g}") for k, v in mean.items() if not k[-1].isdigit()}
        print(f"step {step}/{optim.steps} {main_terms}", flush=True)
        append_log(work, {"step": step, **mean})

    started = time.perf_counter()
    trainer.fit(
        lambda step: dataset.batch(step, batch_size),
        on_log=on_log,
        log_every=20,
        on_checkpoint=lambda step, state: save_checkpoint(last, state),
        checkpoint_every=args.checkpoint_every,
    )
    facts: dict[str, Any] = {
        "command": command,
        "steps": optim.steps,
        "lr": optim.lr,
        "batch_size": batch_size,
        "frames": clips.num_frames,
        "short_sides": list(clips.short_sides),
        "max_size": clips.max_size,
        "test_short_side": short_side,
        "seed": args.seed,
        "data": str(args.data),
        "split": args.split,
        "train_seconds_this_run": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
    }

    def save() -> None:
        save_trained(
            args.out,
            model,
            spec=spec,
            config=config,
            tokenizer=tokenizer,
            facts=facts,
            short_side=short_side,
        )

    save()  # before scoring: an evaluation failure must not lose the training
    if not args.no_eval:
        eval_root = args.eval_data or args.data
        producer = spec.producer(model.eval(), short_side)
        result = evaluate(producer, tokenizer, eval_root, args.eval_split)
        print(_eval_line(args.eval_split, result))
        facts.update(
            eval_data=str(eval_root),
            **{f"{args.eval_split}_{k}": round(getattr(result, k), 4) for k in ("JF", "J", "F")},
        )
        save()
    append_log(work, {"done": True, **facts})
    print(f"wrote {args.out} and {args.out.name.removesuffix('.safetensors')}.tokenizer.json")
