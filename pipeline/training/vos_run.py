"""One ``lsvos train-vos`` run: train an AOT / DeAOT engine on clips of a Ref-YouTube-VOS-layout
folder, write it as a project weights file, and score it (``pipeline.training.vos_eval``).

The run lives in a work folder (:mod:`pipeline.training.runs`): a checkpoint there resumes it,
``log.jsonl`` records every command and logged step. The weights file records the commands
that trained it (``lsvos.trained_with``; an ``--init`` file's own history first), the training
time, the test-time scale (``lsvos.inference``) and, once scored, ``lsvos.score``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from models.shared.checkpoint import load_state_strict
from pipeline.adapters.weights import INFERENCE_KEY, save_project_weights
from pipeline.training.runs import append_log, join_history, save_checkpoint
from pipeline.training.vos_clips import VOSClipConfig, VOSClipDataset
from pipeline.training.vos_engines import StartingPoint, load_engine
from pipeline.training.vos_eval import evaluate_propagator
from vos.deaot import build_network
from vos.train import TrainConfig, Trainer, frozen_state
from vos.variants import EngineSpec, spec_to_dict

Echo = Callable[[str], None]
# BatchNorm step counters: not in inference weights (vos.train.frozen_state drops them).
_BN_COUNTERS = (r".*num_batches_tracked",)


def echo(line: str) -> None:
    """Print ``line`` at once (the command's progress output)."""
    print(line, flush=True)


@dataclass(frozen=True)
class TrainSettings:
    """How the engine is trained (the ``lsvos train-vos`` options of the same names)."""

    split: str
    steps: int
    batch_size: int
    frames: int
    crop: int
    scale: float
    lr: float
    seed: int
    checkpoint_every: int


@dataclass(frozen=True)
class TrainedEngine:
    """A trained engine as its weights file stores it: family, spec, tensors, metadata."""

    spec: EngineSpec
    state: dict[str, torch.Tensor]
    metadata: dict[str, str]

    def save(self, path: Path) -> None:
        save_project_weights(
            path, self.spec.family, spec_to_dict(self.spec), self.state, self.metadata
        )

    def with_score(self, scores: dict[str, Any]) -> TrainedEngine:
        return replace(self, metadata={**self.metadata, "lsvos.score": json.dumps(scores)})


def training_crop(spec: EngineSpec, crop: int) -> int:
    """``crop`` rounded down to 16k+1 for engines with aligned corners (CNN encoders)."""
    if spec.align_corners and (crop - 1) % 16:
        return (crop - 1) // 16 * 16 + 1
    return crop


def train_engine(
    start: StartingPoint,
    data: Path,
    work: Path,
    settings: TrainSettings,
    command: str,
    *,
    say: Echo = echo,
) -> TrainedEngine:
    """Train ``start``'s engine on ``data``'s ``settings.split`` (resuming from ``work``'s
    checkpoint when there is one); ``command`` is logged and recorded with the weights."""
    spec = start.spec
    crop = training_crop(spec, settings.crop)
    clip_config = VOSClipConfig(
        num_frames=settings.frames,
        crop=(crop, crop),
        max_objects=spec.max_objects,
        base_scale=settings.scale,
    )
    config = TrainConfig(
        steps=settings.steps,
        lr=settings.lr,
        seed=settings.seed,
        long_term_gap=spec.train_long_term_gap,
        warmup_steps=min(150, max(1, settings.steps // 10)),
    )
    torch.manual_seed(settings.seed)
    network = build_network(spec, trainable_norm=True)
    trainer = Trainer(network, config)
    checkpoint = work / "checkpoint.pt"
    if checkpoint.is_file():
        trainer.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False))
        say(f"resumed from {checkpoint} at step {trainer.step_index}")
    elif start.state is not None:
        what = str(start.source)
        load_state_strict(network, start.state, what=what, allow_missing=_BN_COUNTERS)
        say(f"initialised from {start.source}")
    dataset = VOSClipDataset(data, settings.split, clip_config, seed=settings.seed)
    append_log(work, {"command": command, "from_step": trainer.step_index})
    say(
        f"training {spec.name} on {len(dataset)} videos of {data}/{settings.split}: "
        f"{config.steps} steps x {settings.batch_size} clips x {settings.frames} frames at "
        f"{crop}px"
    )
    started = time.time()

    def on_step(step: int, terms: dict[str, float]) -> None:
        if step % 20 == 0 or step == config.steps:
            record = {"step": step, **{k: round(v, 5) for k, v in terms.items()}}
            record["seconds"] = round(time.time() - started, 1)
            append_log(work, record)
            say(json.dumps(record))

    for step in trainer.run(lambda s: dataset.batch(s, settings.batch_size), on_step):
        if step % settings.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(checkpoint, trainer.state_dict())

    history = join_history([*start.history, *_commands(work)])
    metadata = {
        "lsvos.trained_with": history,
        "lsvos.train_seconds": str(round(time.time() - started)),
        INFERENCE_KEY: json.dumps({"scales": [settings.scale]}),
    }
    trained_spec = replace(spec, notes=f"trained with: {history}")
    return TrainedEngine(trained_spec, frozen_state(network), metadata)


def _commands(work: Path) -> list[str]:
    """Every command that trained the run in ``work`` (a resumed run lists each, in order)."""
    commands: list[str] = []
    for line in (work / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "command" in record and record["command"] not in commands[-1:]:
            commands.append(record["command"])
    return commands


def evaluate_engine(
    path: Path,
    root: Path,
    split: str,
    *,
    seed: int,
    max_videos: int | None = None,
    say: Echo = echo,
) -> dict[str, Any]:
    """Score the engine file ``path`` on ``root``'s ``split``; the scores (with the data, the
    split and the time taken) are said as one JSON line and returned."""
    propagator = load_engine(path)
    start = time.time()
    report = evaluate_propagator(propagator, root, split, seed=seed, max_videos=max_videos)
    scores = {
        "data": str(root),
        "split": split,
        **report.as_dict(),
        "seconds": round(time.time() - start),
    }
    say(json.dumps(scores))
    return scores
