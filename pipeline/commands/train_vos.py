"""``lsvos train-vos``: train a small AOT / DeAOT engine on a Ref-YouTube-VOS-layout folder.

Example (the first stage of the shipped engines; all four stages: weights/README.md)::

    lsvos data synth --out data/synth
    lsvos train-vos --model aot_tiny --data data/synth --out runs/aot_tiny.safetensors
    lsvos train-vos --model deaot_tiny --data data/synth --out runs/deaot_tiny.safetensors

Training resumes from ``--work`` (default ``<out>.work/``), where a checkpoint is written
atomically every ``--checkpoint-every`` steps, beside a JSON-lines log. The weights are written
as a project weights file (``pipeline.weights``: safetensors + the engine spec in its metadata)
and scored on ``--eval-split``: J&F of propagating the ground-truth key-frame mask, and of a
simulated noisy fused mask before and after propagation (``pipeline.training.vos_eval``).
"""

from __future__ import annotations

import argparse
import json
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

NAME = "train-vos"
# BatchNorm step counters: not in inference weights (vos.train.frozen_state drops them).
_BN_COUNTERS = (r".*num_batches_tracked",)
HELP = "train a small AOT / DeAOT propagation engine on a Ref-YouTube-VOS-layout dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="aot_tiny", help="variant (aot_tiny, deaot_tiny, ...)")
    parser.add_argument("--data", type=Path, help="dataset root (e.g. from lsvos data synth)")
    parser.add_argument("--out", type=Path, required=True, help="output weights (.safetensors)")
    parser.add_argument("--split", default="train", help="training split (default train)")
    parser.add_argument("--layers", type=int, help="propagation layers (default: the variant's)")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    parser.add_argument("--batch-size", type=int, default=6, help="clips per step (default 6)")
    parser.add_argument("--frames", type=int, default=4, help="frames per clip (default 4)")
    parser.add_argument("--crop", type=int, default=113, help="square crop side (default 113)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="frames are enlarged by this factor for training, and the engine runs at this "
        "test-time scale (recorded in the weights; default 1.0)",
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


def _commands(work: Path) -> list[str]:
    """Every command that trained the run in ``work`` (a resumed run lists each, in order)."""
    commands = []
    for line in (work / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "command" in record and record["command"] not in commands[-1:]:
            commands.append(record["command"])
    return commands


def _engine_weights(path: Path):
    """A project weights file that holds an AOT / DeAOT engine (else an error naming it)."""
    from pipeline.engines import ENGINE_FAMILIES
    from pipeline.weights import load_project_weights

    weights = load_project_weights(path)
    if weights.family not in ENGINE_FAMILIES:
        raise InputFileError(f"{path} holds a {weights.family!r} model, not an AOT/DeAOT engine")
    return weights


def load_engine(path: Path, **settings: Any):
    """A propagator from a project weights file written by this command."""
    from pipeline.weights import inference_scales
    from vos.build import build_propagator
    from vos.session import TTAConfig
    from vos.variants import spec_from_dict

    weights = _engine_weights(path)
    settings.setdefault("tta", TTAConfig(scales=inference_scales(weights)))
    return build_propagator(spec_from_dict(weights.config), weights.state, **settings)


def _initial_engine(path: Path):
    """(spec, state, commands that trained it) of an engine file, for ``--init``."""
    from dataclasses import replace

    from vos.variants import spec_from_dict

    weights = _engine_weights(path)
    spec = replace(spec_from_dict(weights.config), notes="")
    history = weights.metadata.get("lsvos.trained_with", "")
    return spec, weights.state, split_history(history)


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.training.vos_eval import evaluate_propagator

    propagator = load_engine(args.out)
    root = args.eval_data or args.data
    start = time.time()
    report = evaluate_propagator(
        propagator, root, args.eval_split, seed=args.seed, max_videos=args.eval_videos
    )
    scores = {
        "data": str(root),
        "split": args.eval_split,
        **report.as_dict(),
        "seconds": round(time.time() - start),
    }
    print(json.dumps(scores), flush=True)
    return scores


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, args.threads))
    if args.data is None:
        raise UserError("--data is required")
    if args.eval_only:
        _evaluate(args)
        return 0

    from dataclasses import replace

    from models.shared.checkpoint import load_state_strict
    from pipeline.training.vos_clips import VOSClipConfig, VOSClipDataset
    from pipeline.weights import INFERENCE_KEY, save_project_weights
    from vos.deaot import build_network
    from vos.train import TrainConfig, Trainer, frozen_state
    from vos.variants import get_variant, spec_to_dict

    init_state, init_history = None, []
    if args.init is not None:
        spec, init_state, init_history = _initial_engine(args.init)
    else:
        try:
            spec = get_variant(args.model)
        except KeyError as err:
            raise UserError(str(err)) from err
        if args.layers is not None:
            spec = replace(spec, num_layers=args.layers)
    if spec.encoder.kind == "swin":
        raise UserError(f"train-vos trains CNN-encoder engines from scratch; {spec.name} is Swin")
    crop = args.crop
    if spec.align_corners and (crop - 1) % 16:
        crop = (crop - 1) // 16 * 16 + 1
    work = work_folder(args)
    clip_config = VOSClipConfig(
        num_frames=args.frames,
        crop=(crop, crop),
        max_objects=spec.max_objects,
        base_scale=args.scale,
    )
    config = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        long_term_gap=spec.train_long_term_gap,
        warmup_steps=min(150, max(1, args.steps // 10)),
    )
    torch.manual_seed(args.seed)
    network = build_network(spec, trainable_norm=True)
    trainer = Trainer(network, config)
    checkpoint = work / "checkpoint.pt"
    if checkpoint.is_file():
        trainer.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False))
        print(f"resumed from {checkpoint} at step {trainer.step_index}", flush=True)
    elif init_state is not None:
        load_state_strict(network, init_state, what=str(args.init), allow_missing=_BN_COUNTERS)
        print(f"initialised from {args.init}", flush=True)
    dataset = VOSClipDataset(args.data, args.split, clip_config, seed=args.seed)
    command = command_line(args)
    append_log(work, {"command": command, "from_step": trainer.step_index})
    print(
        f"training {spec.name} on {len(dataset)} videos of {args.data}/{args.split}: "
        f"{config.steps} steps x {args.batch_size} clips x {args.frames} frames at {crop}px",
        flush=True,
    )
    started = time.time()

    def on_step(step: int, terms: dict[str, float]) -> None:
        if step % 20 == 0 or step == config.steps:
            record = {"step": step, **{k: round(v, 5) for k, v in terms.items()}}
            record["seconds"] = round(time.time() - started, 1)
            append_log(work, record)
            print(json.dumps(record), flush=True)

    for step in trainer.run(lambda s: dataset.batch(s, args.batch_size), on_step):
        if step % args.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(checkpoint, trainer.state_dict())

    history = join_history([*init_history, *_commands(work)])  # --init: its file's history first
    trained_spec = replace(spec, notes=f"trained with: {history}")
    meta = {"lsvos.trained_with": history, "lsvos.train_seconds": str(round(time.time() - started))}
    meta[INFERENCE_KEY] = json.dumps({"scales": [args.scale]})
    state = frozen_state(network)
    save_project_weights(args.out, spec.family, spec_to_dict(trained_spec), state, meta)
    print(f"wrote {args.out}", flush=True)
    if not args.no_eval:
        scores = _evaluate(args)
        append_log(work, {"eval": scores})
        meta["lsvos.score"] = json.dumps(scores)
        save_project_weights(args.out, spec.family, spec_to_dict(trained_spec), state, meta)
    return 0
