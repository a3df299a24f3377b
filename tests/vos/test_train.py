"""The training loop (tiny, on tensors) and the file side: clips, the train-vos command."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from tests.vos.conftest import synthetic_video, tiny_spec
from vos.build import EngineWeights, build_engine
from vos.deaot import build_network
from vos.preprocess import normalize_frames
from vos.train import TrainConfig, Trainer, VOSBatch, frozen_state, learning_rate
from vos.variants import spec_to_dict

torch.set_num_threads(1)


def toy_batch() -> VOSBatch:
    frames, labels = synthetic_video(frames=3, height=33, width=49)
    return VOSBatch(
        normalize_frames(frames)[None].repeat(2, 1, 1, 1, 1),
        labels[None].repeat(2, 1, 1, 1),
        torch.tensor([2, 2]),
    )


def test_training_fits_a_clip_and_exports_inference_weights(family: str) -> None:
    torch.manual_seed(0)
    spec = tiny_spec(family)
    network = build_network(spec, trainable_norm=True)
    trainer = Trainer(network, TrainConfig(steps=8, lr=3e-3, warmup_steps=2, seed=0))
    batch = toy_batch()
    losses = [trainer.step(batch)["loss"] for _ in range(8)]
    assert losses[-1] < losses[0]
    state = frozen_state(network)
    assert not any(k.endswith("num_batches_tracked") for k in state)
    engine = build_engine(family, EngineWeights.project(state, spec_to_dict(spec), "trained"))
    inference = engine.network  # type: ignore[attr-defined]
    assert set(inference.state_dict()) == set(state)
    network.eval()
    x = batch.frames[0, :1]
    with torch.no_grad():
        a = network.encode_image(x).tokens
        b = inference.encode_image(x).tokens
    assert torch.allclose(a, b, atol=1e-5)


def test_learning_rate_warms_up_then_decays() -> None:
    config = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr=0.0)
    rates = [learning_rate(s, config) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(rates[9:]))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.core.data import write_synthetic_benchmark

    root = tmp_path_factory.mktemp("synth")
    return write_synthetic_benchmark(root, seed=3, videos=2, sizes=((96, 128),))


def test_clips_are_deterministic_and_well_formed(synth_root: Path) -> None:
    from pipeline.training.vos_clips import VOSClipConfig, VOSClipDataset

    config = VOSClipConfig(num_frames=3, crop=(65, 65), max_objects=2)
    data = VOSClipDataset(synth_root, "train", config, seed=1)
    a, b = data.batch(5, 3), data.batch(5, 3)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.labels, b.labels)
    assert a.frames.shape == (3, 3, 3, 65, 65) and a.labels.shape == (3, 3, 65, 65)
    for clip, n in zip(a.labels, a.num_objects, strict=True):
        assert 1 <= int(n) <= 2
        assert int(clip.max()) <= int(n)
        assert set(torch.unique(clip[0]).tolist()) == set(range(int(n) + 1))


@pytest.mark.slow
def test_train_vos_command_trains_saves_resumes_and_scores(
    synth_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "engine.safetensors"
    args = [
        "train-vos", "--model", "deaot_tiny", "--data", str(synth_root), "--out", str(out),
        "--steps", "2", "--batch-size", "2", "--frames", "3", "--crop", "65",
        "--checkpoint-every", "1", "--threads", "1", "--eval-videos", "1",
    ]  # fmt: skip
    assert main(args) == 0
    assert out.is_file() and (tmp_path / "engine.safetensors.work" / "checkpoint.pt").is_file()
    assert main([*args[:8], "4", *args[9:]]) == 0  # resumes at step 2, trains to 4
    log = (tmp_path / "engine.safetensors.work" / "log.jsonl").read_text()
    assert '"step": 4' in log and '"gt_key_JF"' in log
    assert main(["train-vos", "--data", str(synth_root), "--out", str(out), "--eval-only",
                 "--eval-videos", "1", "--threads", "1"]) == 0  # fmt: skip
    assert main(["train-vos", "--model", "swinb_deaotl", "--data", str(synth_root),
                 "--out", str(out)]) == 2  # fmt: skip


def test_train_vos_init_fine_tunes_a_shipped_engine(synth_root: Path, tmp_path: Path) -> None:
    from pipeline.adapters.weights import load_project_weights

    shipped = Path(__file__).parents[2] / "weights" / "deaot_tiny.safetensors"
    out = tmp_path / "tuned.safetensors"
    args = [
        "train-vos", "--init", str(shipped), "--model", "aot_tiny", "--data", str(synth_root),
        "--out", str(out), "--steps", "1", "--lr", "1e-12", "--batch-size", "1",
        "--frames", "3", "--crop", "65", "--threads", "1", "--no-eval",
    ]  # fmt: skip
    assert main(args) == 0
    before, after = load_project_weights(shipped), load_project_weights(out)
    assert after.family == "deaot"  # the file's spec, not --model's
    history = after.metadata["lsvos.trained_with"]
    assert history.startswith(before.metadata["lsvos.trained_with"] + " && ")
    assert history.count(" && ") == before.metadata["lsvos.trained_with"].count(" && ") + 1
    assert {k: v for k, v in after.config.items() if k != "notes"} == {
        k: v for k, v in before.config.items() if k != "notes"
    }
    params = [k for k in before.state if "running_" not in k]
    assert params and all(torch.allclose(before.state[k], after.state[k]) for k in params)
    not_engine = tmp_path / "not_engine.safetensors"
    from pipeline.adapters.weights import save_project_weights

    save_project_weights(not_engine, "sgmg", {}, {"w": torch.zeros(1)}, {})
    assert main([*args[:2], str(not_engine), *args[3:]]) == 2
