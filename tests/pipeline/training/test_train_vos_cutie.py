"""``lsvos train-vos --model cutie_tiny``: the Cutie wiring of pipeline.training (clips in
[0, 1], the trainer, resuming from the work folder, the weights file, the engine it builds,
scoring) on a two-video synthetic benchmark."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pipeline.adapters.engines import engine_from_config, engine_problems
from pipeline.adapters.weights import load_project_weights
from pipeline.cli import main
from pipeline.orchestration.config import compose_config
from pipeline.training.vos_clips import VOSClipConfig, VOSClipDataset
from pipeline.training.vos_engines import load_engine, starting_point
from pipeline.training.vos_run import training_crop
from vos.cutie.engine import CutieEngine
from vos.cutie.spec import CUTIE_TINY

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.core.data import write_synthetic_benchmark

    root = tmp_path_factory.mktemp("synth")
    return write_synthetic_benchmark(root, seed=3, videos=2, sizes=((64, 80),))


def test_cutie_clips_are_in_unit_range(synth_root: Path) -> None:
    config = VOSClipConfig(num_frames=3, crop=(48, 48), normalized=False)
    batch = VOSClipDataset(synth_root, "train", config, seed=0).batch(0, 2)
    assert batch.frames.shape == (2, 3, 3, 48, 48)
    assert float(batch.frames.min()) >= 0 and float(batch.frames.max()) <= 1
    assert float(batch.frames.max()) > 0.5  # not normalised twice or scaled to nothing


def test_cutie_variant_and_crop_resolution() -> None:
    start = starting_point("cutie_tiny", 2, None)
    assert start.spec == replace(CUTIE_TINY, num_blocks=2) and start.state is None
    assert training_crop(CUTIE_TINY, 113) == 112  # Cutie: multiples of its stride 16


def test_train_vos_trains_resumes_scores_and_fine_tunes_cutie(
    synth_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cutie.safetensors"
    args = [
        "train-vos", "--model", "cutie_tiny", "--data", str(synth_root), "--out", str(out),
        "--steps", "1", "--batch-size", "1", "--frames", "3", "--crop", "48",
        "--checkpoint-every", "1", "--threads", "1", "--eval-videos", "1",
    ]  # fmt: skip
    assert main(args) == 0
    work = tmp_path / "cutie.safetensors.work"
    assert (work / "checkpoint.pt").is_file()
    assert main([*args[:8], "2", *args[9:]]) == 0  # resumes at step 1, trains to 2
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert any(r.get("step") == 2 for r in records)
    assert [r["from_step"] for r in records if "from_step" in r] == [0, 1]
    scores = [r["eval"] for r in records if "eval" in r]
    assert len(scores) == 2 and 0 <= scores[-1]["gt_key_JF"] <= 1

    weights = load_project_weights(out)
    assert weights.family == "cutie" and weights.config["name"] == "tiny"
    assert not any(k.startswith("sensory_aux") for k in weights.state)
    assert json.loads(weights.metadata["lsvos.score"])["expressions"] >= 1
    engine = load_engine(out)  # through vos.build, strict keys
    assert isinstance(engine, CutieEngine)
    # the demo's config builds it through the pipeline's engine adapter
    cfg = compose_config(["+engine@engines.extra=cutie_tiny", f"engines.extra.checkpoint={out}"])
    settings = cfg.engines["extra"]
    assert engine_problems("engines.extra", settings) == []
    assert isinstance(engine_from_config(settings), CutieEngine)

    tuned = tmp_path / "tuned.safetensors"
    init = [
        "train-vos", "--init", str(out), "--data", str(synth_root), "--out", str(tuned),
        "--steps", "1", "--lr", "1e-12", "--batch-size", "1", "--frames", "3",
        "--crop", "48", "--threads", "1", "--no-eval",
    ]  # fmt: skip
    assert main(init) == 0
    after = load_project_weights(tuned)
    assert after.config == weights.config
    history = after.metadata["lsvos.trained_with"]
    assert history.startswith(weights.metadata["lsvos.trained_with"] + " && ")
    params = [k for k in weights.state if "running_" not in k and "num_batches" not in k]
    assert all(torch.allclose(weights.state[k], after.state[k]) for k in params)


def test_cutie_refuses_a_test_time_scale(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "scaled.safetensors"
    args = [
        "train-vos", "--model", "cutie_tiny", "--data", str(synth_root), "--out", str(out),
        "--steps", "1", "--scale", "2.0", "--threads", "1",
    ]  # fmt: skip
    assert main(args) == 2
    assert not out.exists()
