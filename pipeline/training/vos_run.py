"""One ``lsvos train-vos`` run: train an AOT / DeAOT (:mod:`vos.train`) or Cutie
(:mod:`vos.cutie.train`) engine on clips of a Ref-YouTube-VOS-layout folder, write it as a
project weights file, and score it (``pipeline.training.vos_eval``).

The run lives in a work folder (:mod:`pipeline.training.runs`): a checkpoint there resumes it,
``log.jsonl`` records every command and logged step. The weights file records the commands
that trained it (``lsvos.trained_with``; an ``--init`` file's own history first), the training
time, the test-time scale (``lsvos.inference``) and, once scored, ``lsvos.score``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from models.shared.checkpoint import load_state_strict
from pipeline.adapters.weights import INFERENCE_KEY, save_project_weights
from pipeline.core.errors import UserError
from pipeline.training.runs import append_log, join_history, save_checkpoint
from pipeline.training.vos_clips import VOSClipConfig, VOSClipDataset
from pipeline.training.vos_engines import StartingPoint, TrainableSpec, load_engine
from pipeline.training.vos_eval import evaluate_propagator
from vos.cutie.engine import CUTIE_FAMILY
from vos.cutie.network import CutieNetwork
from vos.cutie.spec import CutieSpec
from vos.cutie.spec import spec_to_dict as cutie_spec_to_dict
from vos.cutie.train import CutieTrainConfig, CutieTrainer
from vos.deaot import build_network
from vos.train import TrainConfig, Trainer, VOSBatch, frozen_state
from vos.variants import spec_to_dict

Echo = Callable[[str], None]
# BatchNorm step counters: not in inference weights (vos.train.frozen_state drops them).
_BN_COUNTERS = (r".*num_batches_tracked",)
CUTIE_TRAIN_OBJECTS = 3  # objects per clip (official main_training num_objects)


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

    spec: TrainableSpec
    state: dict[str, torch.Tensor]
    metadata: dict[str, str]

    def save(self, path: Path) -> None:
        if isinstance(self.spec, CutieSpec):
            family, config = CUTIE_FAMILY, cutie_spec_to_dict(self.spec)
        else:
            family, config = self.spec.family, spec_to_dict(self.spec)
        save_project_weights(path, family, config, self.state, self.metadata)

    def with_score(self, scores: dict[str, Any]) -> TrainedEngine:
        return replace(self, metadata={**self.metadata, "lsvos.score": json.dumps(scores)})


def training_crop(spec: TrainableSpec, crop: int) -> int:
    """``crop`` rounded down to 16k+1 for engines with aligned corners (CNN encoders), to a
    multiple of 16 for Cutie (its stride, so no padding)."""
    if isinstance(spec, CutieSpec):
        return max(16, crop // 16 * 16)
    if spec.align_corners and (crop - 1) % 16:
        return (crop - 1) // 16 * 16 + 1
    return crop


class _EngineTrainer(Protocol):
    """What the run needs of :class:`vos.train.Trainer` and
    :class:`vos.cutie.train.CutieTrainer`."""

    network: nn.Module
    step_index: int

    def run(
        self,
        batches: Callable[[int], VOSBatch],
        on_step: Callable[[int, dict[str, float]], None] | None = None,
    ) -> Iterator[int]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _trainer(spec: TrainableSpec, settings: TrainSettings) -> tuple[_EngineTrainer, int]:
    """A fresh trainer for ``spec`` (weights seeded by ``settings.seed``) and the objects per
    training clip."""
    warmup = min(150, max(1, settings.steps // 10))
    torch.manual_seed(settings.seed)
    if isinstance(spec, CutieSpec):
        if settings.scale != 1.0:
            raise UserError(
                f"Cutie runs at the frames' own size (its engine takes no test-time scale); "
                f"train it with --scale 1.0, not {settings.scale}"
            )
        config = CutieTrainConfig(
            steps=settings.steps, lr=settings.lr, seed=settings.seed, warmup_steps=warmup
        )
        return CutieTrainer(CutieNetwork(spec), config), CUTIE_TRAIN_OBJECTS
    aot_config = TrainConfig(
        steps=settings.steps,
        lr=settings.lr,
        seed=settings.seed,
        long_term_gap=spec.train_long_term_gap,
        warmup_steps=warmup,
    )
    return Trainer(build_network(spec, trainable_norm=True), aot_config), spec.max_objects


def _trained_weights(
    spec: TrainableSpec, trainer: _EngineTrainer, history: str
) -> tuple[TrainableSpec, dict[str, torch.Tensor]]:
    """The spec and inference weights a weights file stores after training."""
    if isinstance(trainer, CutieTrainer):
        return spec, trainer.inference_state()
    assert not isinstance(spec, CutieSpec)
    return replace(spec, notes=f"trained with: {history}"), frozen_state(trainer.network)


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
    trainer, max_objects = _trainer(spec, settings)
    clip_config = VOSClipConfig(
        num_frames=settings.frames,
        crop=(crop, crop),
        max_objects=max_objects,
        base_scale=settings.scale,
        normalized=not isinstance(spec, CutieSpec),
    )
    checkpoint = work / "checkpoint.pt"
    if checkpoint.is_file():
        trainer.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False))
        say(f"resumed from {checkpoint} at step {trainer.step_index}")
    elif start.state is not None:
        what = str(start.source)
        load_state_strict(trainer.network, start.state, what=what, allow_missing=_BN_COUNTERS)
        say(f"initialised from {start.source}")
    dataset = VOSClipDataset(data, settings.split, clip_config, seed=settings.seed)
    append_log(work, {"command": command, "from_step": trainer.step_index})
    say(
        f"training {spec.name} on {len(dataset)} videos of {data}/{settings.split}: "
        f"{settings.steps} steps x {settings.batch_size} clips x {settings.frames} frames at "
        f"{crop}px"
    )
    started = time.time()

    def on_step(step: int, terms: dict[str, float]) -> None:
        if step % 20 == 0 or step == settings.steps:
            record = {"step": step, **{k: round(v, 5) for k, v in terms.items()}}
            record["seconds"] = round(time.time() - started, 1)
            append_log(work, record)
            say(json.dumps(record))

    for step in trainer.run(lambda s: dataset.batch(s, settings.batch_size), on_step):
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            save_checkpoint(checkpoint, trainer.state_dict())

    history = join_history([*start.history, *_commands(work)])
    metadata = {
        "lsvos.trained_with": history,
        "lsvos.train_seconds": str(round(time.time() - started)),
        INFERENCE_KEY: json.dumps({"scales": [settings.scale]}),
    }
    trained_spec, state = _trained_weights(spec, trainer, history)
    return TrainedEngine(trained_spec, state, metadata)


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
