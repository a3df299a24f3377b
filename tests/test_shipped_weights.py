"""The tiny models in ``weights/`` load through the demo's own configs and really segment.

Every producer and engine of ``recipe=demo`` is built exactly as the flow builds it (the
composed config, :func:`pipeline.adapters.producers.producer_from_config` /
:func:`pipeline.adapters.engines.get_propagator`), run on a small synthetic video, and checked
for well-formed output; each file is documented in ``weights/README.md`` with the J&F its
metadata records.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pipeline.adapters.weights import load_project_weights
from pipeline.orchestration.config import WEIGHTS_DIR, compose_config

DEMO = compose_config(["recipe=demo"])
PRODUCERS = sorted(DEMO.producers)
ENGINES = sorted(DEMO.engines)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory):
    """The first 6 frames (T x 3 x H x W uint8) and 2 expressions of a synthetic valid video."""
    from pipeline.core.data import open_dataset, write_synthetic_benchmark

    root = write_synthetic_benchmark(
        tmp_path_factory.mktemp("synth") / "synth", seed=3, videos=1, splits=("valid",)
    )
    dataset = open_dataset("ytvos", root, "valid")
    video_id = dataset.video_ids()[0]
    frames = torch.from_numpy(dataset.read_frames(video_id)[:6]).permute(0, 3, 1, 2)
    texts = [e.text for e in dataset.expressions(video_id)[:2]]
    return frames.contiguous(), texts


def _shipped(path: str) -> Path:
    file = Path(path)
    if not file.is_file():
        pytest.fail(f"{file} is not shipped: weights/README.md says how to train it")
    assert file.parent == WEIGHTS_DIR
    assert file.stat().st_size < 16 * 2**20, f"{file.name} is not small"
    return file


@pytest.mark.parametrize("name", PRODUCERS)
def test_demo_producer_segments_a_video(name: str, video) -> None:
    from pipeline.adapters.producers import get_tokenizer, producer_from_config

    settings = DEMO.producers[name]
    _shipped(settings.checkpoint)
    frames, texts = video
    producer = producer_from_config(settings, "ytvos")
    results = list(producer.segment_video(frames, get_tokenizer(settings)(texts)))
    assert len(results) == len(texts)
    for result in results:
        assert result.probs.shape == (frames.shape[0], *frames.shape[-2:])
        assert result.scores.shape == (frames.shape[0],)
        assert float(result.probs.min()) >= 0.0 and float(result.probs.max()) <= 1.0
        assert torch.isfinite(result.scores).all()


@pytest.mark.parametrize("name", ENGINES)
def test_demo_engine_propagates_a_video(name: str, video) -> None:
    from pipeline.adapters.engines import get_propagator, protocol_config
    from vos.protocol import propagate_video

    settings = DEMO.engines[name]
    _shipped(settings.checkpoint)
    frames, _ = video
    T, H, W = frames.shape[0], *frames.shape[-2:]
    mask = torch.zeros(T, H, W, dtype=torch.bool)
    mask[:, H // 4 : H // 2, W // 4 : W // 2] = True
    results = propagate_video(
        get_propagator(settings), frames, {"0": mask}, {"0": 2}, protocol_config(settings)
    )
    assert results["0"].masks.shape == (T, H, W)
    assert torch.equal(results["0"].masks[2], mask[2])  # the key frame is kept
    assert results["0"].masks[[0, 1, 3, 4, 5]].any()  # something was propagated


@pytest.mark.parametrize("path", sorted(WEIGHTS_DIR.glob("*.safetensors")), ids=lambda p: p.name)
def test_every_shipped_file_is_documented_with_its_score(path: Path) -> None:
    weights = load_project_weights(path)
    readme = (WEIGHTS_DIR / "README.md").read_text()
    assert f"## {path.name}" in readme, f"weights/README.md has no section for {path.name}"
    score = json.loads(weights.metadata.get("lsvos.score", "{}"))
    recorded = score.get("valid_JF", score.get("gt_key_JF"))
    assert recorded is not None, f"{path.name} records no valid-split score"
    section = readme.split(f"## {path.name}", 1)[1].split("\n## ", 1)[0]
    assert f"{recorded:.3f}" in section, f"README's {path.name} section lacks {recorded:.3f}"


@pytest.mark.parametrize("name", ENGINES)
def test_demo_engine_runs_at_the_scale_its_weights_record(name: str) -> None:
    from pipeline.adapters.engines import get_propagator
    from pipeline.adapters.weights import inference_scales

    settings = DEMO.engines[name]
    _shipped(settings.checkpoint)
    assert settings.scales is None  # the demo defers to the weights file
    recorded = inference_scales(load_project_weights(settings.checkpoint))
    assert get_propagator(settings).tta.scales == recorded
    assert get_propagator(replace(settings, scales=[1.25])).tta.scales == (1.25,)


def test_demo_sgmg_runs_at_the_short_side_its_weights_record() -> None:
    """The tiny SgMg is scale-sensitive (valid J&F 0.58 at 160, 0.34 at the released 360): the
    demo must run it at the size its score was measured at, which the file records."""
    from pipeline.adapters.producers import producer_from_config
    from pipeline.adapters.weights import inference_short_side

    settings = DEMO.producers["sgmg"]
    _shipped(settings.checkpoint)
    assert "short_side" not in settings.options  # the demo defers to the file
    recorded = inference_short_side(load_project_weights(settings.checkpoint).metadata)
    assert recorded is not None, "sgmg_tiny records no test-time short side"
    assert producer_from_config(settings, "ytvos").protocol.short_side == recorded
