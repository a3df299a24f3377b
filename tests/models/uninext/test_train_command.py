"""``lsvos train-rvos --model uninext-tiny`` ships weights the demo's producer plugin loads."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from pipeline.adapters.producers import producer_from_config
from pipeline.cli import main
from pipeline.core.data import write_synthetic_benchmark
from pipeline.orchestration.config import ProducerConfig, ProducerFamily
from pipeline.training.rvos_models import load_trained, model_spec, save_trained, tokenizer_path


def test_shipped_weights_load_through_the_producer_plugin(tmp_path: Path) -> None:
    """The registry's file format is what the demo's ``uninext_tiny`` producer config reads."""
    from models.uninext.spec import UNINEXT_TINY
    from pipeline.adapters.tokenize import build_word_tokenizer
    from pipeline.core.data import synthetic_vocabulary

    spec = model_spec("uninext-tiny")
    tokenizer = build_word_tokenizer(synthetic_vocabulary())
    config = spec.default_config(tokenizer.vocab_size)
    assert config == asdict(UNINEXT_TINY)
    torch.manual_seed(0)
    model = spec.build(config)
    out = tmp_path / "uninext_tiny.safetensors"
    short_side = spec.test_short_side
    facts = {"steps": 0}
    save_trained(
        out,
        model,
        spec=spec,
        config=config,
        tokenizer=tokenizer,
        facts=facts,
        short_side=short_side,
    )
    producer = producer_from_config(
        ProducerConfig(family=ProducerFamily("uninext"), checkpoint=str(out)), "ytvos"
    )
    frames = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    tokens = tokenizer(["the red circle", "a small blue square on the left"])
    ours = list(producer.segment_video(frames, tokens))
    theirs = list(spec.producer(model.eval(), short_side).segment_video(frames, tokens))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.probs, b.probs)


@pytest.mark.slow
def test_train_ship_and_load_through_the_producer_plugin(tmp_path: Path) -> None:
    data = write_synthetic_benchmark(
        tmp_path / "synth", seed=4, videos=1, sizes=((96, 128),), splits=("train", "valid")
    )
    out = tmp_path / "uninext_tiny.safetensors"
    args = ["train-rvos", "--model", "uninext-tiny", "--data", str(data), "--out", str(out)]
    assert main([*args, "--steps", "2", "--no-eval"]) == 0
    trained = load_trained(out)
    producer = producer_from_config(
        ProducerConfig(
            family=ProducerFamily("uninext"), variant="tiny", checkpoint=str(out), device="cpu"
        ),
        "ytvos",
    )
    frames = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8)
    tokens = trained.tokenizer(["the red circle", "a small blue square on the left"])
    ours = list(producer.segment_video(frames, tokens))
    theirs = list(trained.producer().segment_video(frames, tokens))
    assert tokenizer_path(out).is_file() and len(ours) == 2
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.probs, b.probs)
        torch.testing.assert_close(a.scores, b.scores)
