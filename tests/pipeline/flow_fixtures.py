"""Inputs for flow tests: a small synthetic split, imported "model" predictions made from its
ground truth with seeded corruptions, and small random-weight AOT/DeAOT engines.

The engines are untrained, so their propagations are poor; these tests check the orchestration
(caching, re-runs, packaging, reports), not segmentation quality.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.adapters.weights import save_project_weights
from pipeline.core.data import open_dataset, write_synthetic_benchmark
from pipeline.core.io import atomic_write_bytes, encode_mask_png
from pipeline.orchestration.cache import FileIdentities
from pipeline.orchestration.config import LsvosConfig
from pipeline.orchestration.plan import make_plan
from pipeline.orchestration.recipe import Recipe
from pipeline.orchestration.splits import open_split

PRODUCERS = ("soc", "mutr", "referformer", "sgmg", "uninext")


def corrupt(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible model error: shifted, dilated or eroded masks with some frames lost."""
    out = np.empty_like(masks)
    kernel = np.ones((3, 3), np.uint8)
    dx, dy = rng.integers(-3, 4, size=2)
    for t, m in enumerate(masks):
        m8 = np.roll(m.astype(np.uint8), (int(dy), int(dx)), axis=(0, 1))
        op = rng.integers(0, 3)
        if op == 1:
            m8 = cv2.dilate(m8, kernel)
        elif op == 2:
            m8 = cv2.erode(m8, kernel)
        if rng.random() < 0.15:
            m8[:] = 0
        out[t] = m8 > 0
    return out


def write_predictions(dataset_root: Path, split: str, out: Path, seed: int) -> None:
    """``out/Annotations/<video>/<exp>/<frame>.png`` and ``out/scores.json``."""
    dataset = open_dataset("ytvos", dataset_root, split)
    rng = np.random.default_rng(seed)
    scores: dict[str, dict[str, list[float]]] = {}
    for video in dataset.videos():
        scores[video.id] = {}
        for exp in dataset.expressions(video.id):
            gt = dataset.ground_truth(video.id, exp.id)
            pred = corrupt(gt, rng)
            for fid, mask in zip(video.frame_ids, pred, strict=True):
                atomic_write_bytes(
                    out / "Annotations" / video.id / exp.id / f"{fid}.png", encode_mask_png(mask)
                )
            scores[video.id][exp.id] = [float(s) for s in rng.random(len(video.frame_ids))]
    (out / "scores.json").write_text(json.dumps(scores))


def write_random_engine(path: Path, variant: str, seed: int) -> None:
    import torch

    from vos.deaot import build_network
    from vos.variants import get_variant

    torch.manual_seed(seed)
    spec = get_variant(variant)
    network = build_network(spec)
    save_project_weights(path, spec.family, asdict(spec), network.state_dict())


SMALL_SIZES = ((48, 64), (64, 48))


def plan_keys(cfg: LsvosConfig, **selection: Any) -> dict[str, str]:
    """Every selected node's cache key, from the pure plan (nothing written)."""
    recipe = Recipe.from_config(cfg)
    dataset = replace(cfg.dataset, root=str(Path(cfg.dataset.root).resolve()))
    files = FileIdentities(Path(cfg.runtime.output_root) / "no-memo")
    plan = make_plan(
        cfg, recipe, recipe.select(**selection), dataset, open_split(dataset), files, run_name="t"
    )
    return {job.name: job.key for job in plan.jobs}


def demo_with_imports(root: Path, videos: int = 2, split: str = "valid") -> list[str]:
    """Overrides running the demo graph on a small synthetic split, producers imported."""
    data = root / "synth"
    if not (data / "meta_expressions").is_dir():
        write_synthetic_benchmark(data, seed=0, videos=videos, sizes=SMALL_SIZES)
    overrides = [
        "recipe=demo",
        "dataset=synth",
        f"dataset.root={data}",
        f"dataset.split={split}",
        f"runtime.output_root={root / 'outputs'}",
        "runtime.workers=2",
        "runtime.progress=false",
    ]
    for i, name in enumerate(PRODUCERS):
        pred = root / "predictions" / name
        if not (pred / "scores.json").is_file():
            write_predictions(data, split, pred, seed=100 + i)
        overrides += [
            f"producer@producers.{name}=import",
            f"producers.{name}.predictions={pred}",
            f"producers.{name}.scores={pred / 'scores.json'}",
        ]
    for name, variant in (("aot", "aot_tiny"), ("deaot", "deaot_tiny")):
        path = root / "engines" / f"{name}.safetensors"
        if not path.is_file():
            write_random_engine(path, variant, seed=7)
        overrides.append(f"engines.{name}.checkpoint={path}")
    return overrides
