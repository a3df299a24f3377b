"""The trainable RVOS models (a small registry) and their shipped-weights format.

Each :class:`RVOSModelSpec` says how to build a model from a config dict (the family's own
builder, :func:`models.build.network_from_config`), its training objective, clip sampling,
optimiser defaults and how to wrap it as a producer. Register a model by adding an entry to
:data:`MODELS` (``lsvos train-rvos --model NAME`` lists them).

Shipped weights are a project weights file (:mod:`pipeline.adapters.weights`: the port's state dict,
``lsvos.family`` and ``lsvos.config`` metadata, so the pipeline's producers load it like any
project weights; plus ``lsvos.model`` = the registry name and the training facts) and the
word-level tokenizer as ``<stem>.tokenizer.json`` beside it. :func:`load_trained` rebuilds the
model and tokenizer from those two files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.build import ProjectWeights, build_network, network_from_config
from models.common.producer import Producer
from models.train.batch import ClipBatch
from models.train.loop import OptimConfig
from pipeline.adapters.tokenize import WordTokenizer, load_word_tokenizer
from pipeline.adapters.weights import (
    INFERENCE_KEY,
    inference_short_side,
    load_project_weights,
    save_project_weights,
)
from pipeline.core.errors import InputFileError, UserError
from pipeline.training.rvos_clips import ClipConfig

MODEL_KEY = "lsvos.model"  # the registry name, beside pipeline.adapters.weights' family and config


@dataclass(frozen=True)
class RVOSModelSpec:
    """How to train, save and run one trainable RVOS model."""

    name: str
    family: str
    description: str
    default_config: Callable[[int], dict[str, Any]]  # vocabulary size -> config dict
    build: Callable[[Mapping[str, Any]], nn.Module]
    loss: Callable[[nn.Module, ClipBatch], Mapping[str, torch.Tensor]]
    producer: Callable[[nn.Module, int], Producer]  # the model's protocol at a short side
    test_short_side: int  # the default test-time short side (a weights file records its own)
    clips: ClipConfig = field(default_factory=ClipConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(steps=3000))
    batch_size: int = 2


def _sgmg_specs() -> dict[str, RVOSModelSpec]:
    from models.sgmg.build import tiny_config
    from models.sgmg.producer import SgMgProducer, SgMgProtocol
    from models.sgmg.train import sgmg_loss

    def producer(model: nn.Module, short_side: int) -> Producer:
        return SgMgProducer(model, SgMgProtocol(short_side=short_side))  # type: ignore[arg-type]

    # from scratch on CPU: one rate for all parts, a short warm-up, looser clipping than the
    # released fine-tuning recipe (lr 1e-4, backbone 5e-5, text 1e-5, clip 0.1)
    optim = OptimConfig(
        steps=4000,
        lr=4e-4,
        lr_by_prefix={},
        weight_decay=1e-4,
        grad_clip=1.0,
        lr_drops=(3200,),
        warmup_steps=200,
    )
    # 3 expressions of a clip share its encoding (for plain SgMg the same as 3 clips)
    clips = ClipConfig(
        num_frames=3,
        short_sides=(128, 144, 160),
        max_size=224,
        size_divisibility=16,
        expressions_per_clip=3,
    )
    variants = {  # name: (description, multi-object, queries)
        "sgmg-tiny": (
            "SgMg, tiny Video Swin + 2-layer word-level RoBERTa, 64-d transformer, 1 query",
            False,
            1,
        ),
        "sgmg-multi-tiny": (
            "Fast (multi-object) SgMg: one pass for every expression of a video, 1 query",
            True,
            1,
        ),
        "sgmg-tiny-5q": (
            "sgmg-tiny with the released 5 queries (ablation: they learn to ignore the text)",
            False,
            5,
        ),
    }
    return {
        name: RVOSModelSpec(
            name=name,
            family="sgmg",
            description=description,
            default_config=lambda vocab, multi=multi, queries=queries: asdict(
                tiny_config(vocab, multi_object=multi, num_queries=queries)
            ),
            build=partial(network_from_config, "sgmg"),
            loss=sgmg_loss,  # type: ignore[arg-type]
            producer=producer,
            test_short_side=160,
            clips=clips,
            optim=optim,
            batch_size=1,
        )
        for name, (description, multi, queries) in variants.items()
    }


def _uninext_specs() -> dict[str, RVOSModelSpec]:
    from dataclasses import asdict, replace

    from models.uninext.producer import UninextProducer
    from models.uninext.spec import UNINEXT_TINY, tiny_spec
    from models.uninext.train import uninext_clip_loss

    def producer(model: nn.Module, short_side: int) -> Producer:
        model.spec = replace(model.spec, min_size=short_side)  # type: ignore[assignment]
        return UninextProducer(model)  # type: ignore[arg-type]

    return {
        "uninext-tiny": RVOSModelSpec(
            name="uninext-tiny",
            family="uninext",
            description="UNINEXT, ResNet-18-GN + 1-layer word-level BERT, 64-d DINO transformer",
            default_config=lambda vocab: asdict(tiny_spec(vocab)),
            build=partial(network_from_config, "uninext"),
            loss=uninext_clip_loss,  # type: ignore[arg-type]
            producer=producer,
            test_short_side=UNINEXT_TINY.min_size,
            # UNINEXT trains frame by frame: a clip's 2 frames are 2 samples
            clips=ClipConfig(num_frames=2, short_sides=(128, 144, 160), max_size=256, min_size=128),
            optim=OptimConfig(
                steps=3000,
                lr=3e-4,
                lr_by_prefix={},
                weight_decay=1e-4,
                grad_clip=0.1,
                lr_drops=(2400,),
                warmup_steps=50,
            ),
            batch_size=2,
        )
    }


def _family_specs() -> dict[str, RVOSModelSpec]:
    from models.family.config import tiny_config
    from models.family.producer import FamilyProducer, Protocol
    from models.family.train import loss_weights_for, make_step

    def producer(model: nn.Module, short_side: int) -> Producer:
        return FamilyProducer(model, Protocol(short_side=short_side))  # type: ignore[arg-type]

    descriptions = {
        "referformer": "ReferFormer, tiny Video Swin + 2-layer word-level RoBERTa, cross-modal FPN",
        "mutr": "MUTR, ReferFormer's trunk + additive fusion, MTA and windowed MTI (VITA)",
        "soc": "SOC, zero queries, VOC from the sentence (VITA), FPN spatial decoder, vl loss",
    }
    # from scratch on CPU: one rate for all parts, a short warm-up, looser clipping than the
    # released recipes (lr 1e-4, backbone 5e-5 / 1e-5, clip 0.1)
    optim = OptimConfig(
        steps=2000,
        lr=4e-4,
        lr_by_prefix={},
        weight_decay=1e-4,
        grad_clip=1.0,
        lr_drops=(1600,),
        warmup_steps=100,
    )
    clips = ClipConfig(num_frames=3, short_sides=(112, 128, 144), max_size=224, min_size=96)
    specs = {
        f"{family}-tiny": RVOSModelSpec(
            name=f"{family}-tiny",
            family=family,
            description=description,
            default_config=lambda vocab, family=family: asdict(tiny_config(family, vocab)),
            build=partial(network_from_config, family),
            loss=make_step(loss_weights_for(family)),  # type: ignore[arg-type]
            producer=producer,
            test_short_side=128,
            clips=clips,
            optim=optim,
            batch_size=2,
        )
        for family, description in descriptions.items()
    }
    # One query, larger frames, a longer schedule: what lifted the tiny SgMg from 0.44 to 0.615
    # (with several queries the slots learn objects and ignore the sentence; weights/README.md)
    optim_1q = replace(optim, steps=8000, lr_drops=(6500,), warmup_steps=200)
    clips_1q = ClipConfig(num_frames=3, short_sides=(128, 144, 160), max_size=256, min_size=96)
    for family, description in descriptions.items():
        specs[f"{family}-tiny-1q"] = replace(
            specs[f"{family}-tiny"],
            name=f"{family}-tiny-1q",
            description=f"{description}; one query, short sides 128-160, 8000 steps",
            default_config=lambda vocab, family=family: asdict(
                replace(tiny_config(family, vocab), num_queries=1)
            ),
            test_short_side=144,
            clips=clips_1q,
            optim=optim_1q,
        )
    return specs


def registered_models() -> dict[str, RVOSModelSpec]:
    """Every trainable model by name (``--model`` of ``lsvos train-rvos``)."""
    models: dict[str, RVOSModelSpec] = {}
    models.update(_sgmg_specs())
    models.update(_uninext_specs())
    models.update(_family_specs())
    return models


def model_spec(name: str) -> RVOSModelSpec:
    models = registered_models()
    if name not in models:
        raise UserError(f"unknown RVOS model {name!r}; trainable: {', '.join(sorted(models))}")
    return models[name]


def tokenizer_path(weights: str | Path) -> Path:
    """``weights/sgmg_tiny.safetensors`` -> ``weights/sgmg_tiny.tokenizer.json``."""
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".tokenizer.json")


def save_trained(
    path: str | Path,
    model: nn.Module,
    *,
    spec: RVOSModelSpec,
    config: Mapping[str, Any],
    tokenizer: WordTokenizer,
    facts: Mapping[str, Any],
    short_side: int,
) -> None:
    """Write the weights as a project weights file (:mod:`pipeline.adapters.weights`: family and
    config
    in the metadata, atomically) and the tokenizer beside them. ``short_side`` is the test-time
    short side the weights are scored and run at (``lsvos.inference``)."""
    from pipeline.adapters.tokenize import save_word_tokenizer

    extra = {
        MODEL_KEY: spec.name,
        "lsvos.trained_with": str(facts.get("command", "")),
        "lsvos.score": json.dumps(dict(facts), sort_keys=True),
        INFERENCE_KEY: json.dumps({"short_side": int(short_side)}),
    }
    save_project_weights(path, spec.family, config, model.state_dict(), extra)
    save_word_tokenizer(tokenizer, tokenizer_path(path))


@dataclass(frozen=True)
class TrainedRVOS:
    """A model rebuilt from shipped weights."""

    model: nn.Module
    tokenizer: WordTokenizer
    spec: RVOSModelSpec
    config: dict[str, Any]
    facts: dict[str, Any]
    short_side: int  # the test-time short side the file records (else the model's default)
    trained_with: str  # the commands that trained it (pipeline.training.runs.join_history)

    def producer(self, short_side: int | None = None) -> Producer:
        """The model's protocol at ``short_side`` (default: the recorded one)."""
        return self.spec.producer(self.model, short_side or self.short_side)


def load_trained(path: str | Path) -> TrainedRVOS:
    """Rebuild a model trained by ``lsvos train-rvos`` (strict key check) and its tokenizer."""
    weights = load_project_weights(path)
    name = weights.metadata.get(MODEL_KEY)
    if name is None:
        raise InputFileError(f"{path} was not written by lsvos train-rvos (no {MODEL_KEY!r})")
    spec = model_spec(name)
    model = build_network(spec.family, ProjectWeights(weights.config, weights.state, str(path)))
    tokenizer = load_word_tokenizer(tokenizer_path(path))
    facts = json.loads(weights.metadata.get("lsvos.score", "{}"))
    short_side = inference_short_side(weights.metadata) or spec.test_short_side
    history = weights.metadata.get("lsvos.trained_with", "")
    return TrainedRVOS(model.eval(), tokenizer, spec, weights.config, facts, short_side, history)


@dataclass(frozen=True)
class EvalResult:
    """J&F of a model on a split: means over expressions (fractions in [0, 1])."""

    J: float
    F: float
    expressions: int
    videos: int
    seconds: float

    @property
    def JF(self) -> float:  # noqa: N802 - the metric's name
        return (self.J + self.F) / 2


def evaluate(
    producer: Producer,
    tokenizer: WordTokenizer,
    root: str | Path,
    split: str = "valid",
    *,
    max_videos: int | None = None,
) -> EvalResult:
    """Run ``producer`` on every video of a split with ground truth; Ref-YTVOS J&F."""
    import time

    from pipeline.core.data import open_dataset
    from pipeline.core.scoring import j_and_f

    dataset = open_dataset("ytvos", Path(root), split)
    if not dataset.has_ground_truth:
        raise UserError(f"{root} split {split!r} has no ground truth to score against")
    js, fs = [], []
    videos = dataset.video_ids()[:max_videos] if max_videos else dataset.video_ids()
    started = time.perf_counter()
    for vid in videos:
        exps = dataset.expressions(vid)
        if not exps:
            continue
        frames = torch.from_numpy(dataset.read_frames(vid)).permute(0, 3, 1, 2).contiguous()
        tokens = tokenizer([e.text for e in exps])
        for result in producer.segment_video(frames, tokens):
            gt = dataset.ground_truth(vid, exps[result.index].id)
            j, f = j_and_f((result.probs > 0.5).numpy(), gt)
            js.append(float(np.mean(j)))
            fs.append(float(np.mean(f)))
    seconds = time.perf_counter() - started
    if not js:
        raise UserError(f"{root} split {split!r} has no expression to score")
    return EvalResult(float(np.mean(js)), float(np.mean(fs)), len(js), len(videos), seconds)
