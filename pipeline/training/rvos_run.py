"""One ``lsvos train-rvos`` run: train a registered RVOS model
(:mod:`pipeline.training.rvos_models`) on clips of a Ref-YouTube-VOS-layout folder, ship it with
its tokenizer, and score it.

The run lives in a work folder (:mod:`pipeline.training.runs`): a checkpoint there resumes it,
``log.jsonl`` records every logged step and the finished run. The weights file records the
commands that trained it (``lsvos.trained_with``; an ``--init`` file's own history first), the
training facts and, once scored, the split's J&F (``lsvos.score``), and the test-time short side
the pipeline's producers run it at (``lsvos.inference``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.shared.checkpoint import load_state_strict
from models.train.loop import OptimConfig, Trainer
from pipeline.adapters.tokenize import WordTokenizer, build_word_tokenizer
from pipeline.core.errors import InputFileError, UserError
from pipeline.training.runs import append_log, join_history, save_checkpoint, split_history
from pipeline.training.rvos_clips import ClipConfig, RVOSClipDataset
from pipeline.training.rvos_models import (
    EvalResult,
    RVOSModelSpec,
    evaluate,
    load_trained,
    model_spec,
    save_trained,
)


@dataclass(frozen=True)
class StartingPoint:
    """What a run starts from: the model, its config and tokenizer, and initial weights.

    Attributes:
        spec: the registered model.
        config: its network config (plain data).
        tokenizer: the word-level tokenizer.
        state: initial weights (an ``--init`` file's), or None for random ones.
        short_side: the test-time short side (the file's, else the model's default).
        history: the commands that trained the initial weights.
        source: the ``--init`` file, or None.
    """

    spec: RVOSModelSpec
    config: dict[str, Any]
    tokenizer: WordTokenizer
    state: dict[str, torch.Tensor] | None
    short_side: int
    history: list[str]
    source: Path | None = None


@dataclass(frozen=True)
class RVOSTrainSettings:
    """How the model is trained (the ``lsvos train-rvos`` options of the same names; None keeps
    the model's default)."""

    split: str = "train"
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    frames: int | None = None
    short_sides: tuple[int, ...] | None = None
    max_size: int | None = None
    test_short_side: int | None = None
    seed: int = 0
    checkpoint_every: int = 100


def starting_point(model: str | None, init: Path | None, data: Path | None) -> StartingPoint:
    """From scratch: ``model``'s defaults and a tokenizer over ``data/vocabulary.txt``. From
    ``init`` (a file ``lsvos train-rvos`` wrote): everything it holds (a different ``model``
    is an error)."""
    if init is not None:
        initial = load_trained(init)
        if model is not None and model != initial.spec.name:
            raise UserError(f"--init {init} holds {initial.spec.name}, not --model {model}")
        return StartingPoint(
            spec=initial.spec,
            config=initial.config,
            tokenizer=initial.tokenizer,
            state=initial.model.state_dict(),
            short_side=initial.short_side,
            history=split_history(initial.trained_with),
            source=init,
        )
    spec = model_spec(str(model))
    vocab_file = Path(str(data)) / "vocabulary.txt"
    if not vocab_file.is_file():
        raise InputFileError(f"{vocab_file} not found: the word-level tokenizer is built from it")
    tokenizer = build_word_tokenizer(vocab_file.read_text().split())
    return StartingPoint(
        spec=spec,
        config=spec.default_config(tokenizer.vocab_size),
        tokenizer=tokenizer,
        state=None,
        short_side=spec.test_short_side,
        history=[],
    )


def clip_config(clips: ClipConfig, settings: RVOSTrainSettings) -> ClipConfig:
    """The model's clip settings with ``frames``, ``short_sides`` and ``max_size`` applied."""
    changes = {
        "num_frames": settings.frames,
        "short_sides": settings.short_sides,
        "max_size": settings.max_size,
    }
    return replace(clips, **{k: v for k, v in changes.items() if v is not None})


def optim_config(optim: OptimConfig, settings: RVOSTrainSettings) -> OptimConfig:
    """The model's optimiser settings with ``steps`` (drops scaled along) and ``lr`` (every
    per-prefix rate scaled with it)."""
    if settings.steps is not None:
        scale = settings.steps / optim.steps
        optim = replace(
            optim,
            steps=settings.steps,
            lr_drops=tuple(int(d * scale) for d in optim.lr_drops),
            warmup_steps=min(optim.warmup_steps, settings.steps // 10),
        )
    if settings.lr is not None:
        ratio = settings.lr / optim.lr
        optim = replace(
            optim,
            lr=settings.lr,
            lr_by_prefix={k: v * ratio for k, v in optim.lr_by_prefix.items()},
        )
    return optim


def eval_line(split: str, result: EvalResult) -> str:
    """The one-line J&F report of a scored split."""
    return (
        f"{split}: J&F {result.JF:.4f} (J {result.J:.4f}, F {result.F:.4f}) over "
        f"{result.expressions} expressions of {result.videos} videos, {result.seconds:.1f} s"
    )


def evaluate_file(out: Path, root: Path, split: str, short_side: int | None) -> EvalResult:
    """Score the shipped weights ``out`` on ``root``'s ``split`` at ``short_side`` (default:
    the recorded one)."""
    trained = load_trained(out)
    return evaluate(trained.producer(short_side), trained.tokenizer, root, split)


def train_rvos(
    start: StartingPoint,
    data: Path,
    out: Path,
    work: Path,
    settings: RVOSTrainSettings,
    command: str,
    *,
    eval_root: Path | None,
    eval_split: str = "valid",
) -> None:
    """Train from ``start`` on ``data``, resuming from ``work/last.pt``; write ``out`` and its
    tokenizer, then (unless ``eval_root`` is None) score ``eval_split`` and write it again with
    the score. ``command`` is this run's command line (appended to the file's history)."""
    spec = start.spec
    clips = clip_config(spec.clips, settings)
    dataset = RVOSClipDataset(
        data, start.tokenizer, clips, split=settings.split, seed=settings.seed
    )
    torch.manual_seed(settings.seed)
    model = spec.build(start.config)
    optim = optim_config(spec.optim, settings)
    batch_size = settings.batch_size or spec.batch_size
    short_side = settings.test_short_side or start.short_side
    seconds = _fit(model, spec, optim, start, work, settings.checkpoint_every, dataset, batch_size)
    facts: dict[str, Any] = {
        "command": join_history([*start.history, command]),
        "steps": optim.steps,
        "lr": optim.lr,
        "batch_size": batch_size,
        "frames": clips.num_frames,
        "short_sides": list(clips.short_sides),
        "max_size": clips.max_size,
        "test_short_side": short_side,
        "seed": settings.seed,
        "data": str(data),
        "split": settings.split,
        "train_seconds_this_run": round(seconds, 1),
        "torch": torch.__version__,
    }

    def save() -> None:
        save_trained(
            out,
            model,
            spec=spec,
            config=start.config,
            tokenizer=start.tokenizer,
            facts=facts,
            short_side=short_side,
        )

    save()  # before scoring: an evaluation failure must not lose the training
    if eval_root is not None:
        producer = spec.producer(model.eval(), short_side)
        result = evaluate(producer, start.tokenizer, eval_root, eval_split)
        print(eval_line(eval_split, result))
        facts.update(
            eval_data=str(eval_root),
            **{f"{eval_split}_{k}": round(getattr(result, k), 4) for k in ("JF", "J", "F")},
        )
        save()
    append_log(work, {"done": True, **facts})
    print(f"wrote {out} and {out.name.removesuffix('.safetensors')}.tokenizer.json")


def _fit(
    model: nn.Module,
    spec: RVOSModelSpec,
    optim: OptimConfig,
    start: StartingPoint,
    work: Path,
    checkpoint_every: int,
    dataset: RVOSClipDataset,
    batch_size: int,
) -> float:
    """Run the optimiser from ``work/last.pt`` if there is one (else from ``start``'s weights
    or random ones), logging every 20 steps and checkpointing every ``checkpoint_every``;
    returns the seconds the optimisation took."""
    trainer = Trainer(model, spec.loss, optim)
    last = work / "last.pt"
    if last.is_file():
        trainer.load_state_dict(torch.load(last, map_location="cpu", weights_only=True))
        print(f"resumed from {last} at step {trainer.step}")
    elif start.state is not None:
        load_state_strict(model, start.state, what=str(start.source))
        print(f"initialised from {start.source}")

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
        checkpoint_every=checkpoint_every,
    )
    return time.perf_counter() - started
