"""``lsvos train-rvos`` end to end on a tiny synthetic benchmark: train, resume, ship, score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from pipeline.data import write_synthetic_benchmark
from pipeline.training.rvos_models import (
    evaluate,
    load_trained,
    registered_models,
    tokenizer_path,
)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_benchmark(root, seed=5, videos={"train": 2, "valid": 1, "test": 1})
    return root


def test_registry_lists_the_sgmg_models(capsys: pytest.CaptureFixture[str]) -> None:
    models = registered_models()
    sgmg = ("sgmg-tiny", "sgmg-multi-tiny", "sgmg-tiny-5q")
    assert set(sgmg) <= set(models)
    # one query for the tiny models, the released five for the ablation
    assert [models[name].default_config(50)["num_queries"] for name in sgmg] == [1, 1, 5]
    assert models["sgmg-multi-tiny"].default_config(50)["multi_object"]
    assert main(["train-rvos", "--list"]) == 0
    assert "sgmg-multi-tiny" in capsys.readouterr().out
    assert main(["train-rvos", "--model", "nope", "--data", ".", "--out", "x.safetensors"]) == 2


@pytest.mark.parametrize("name", ["sgmg-tiny", "sgmg-multi-tiny"])
def test_train_resume_ship_and_score(synth: Path, tmp_path: Path, name: str) -> None:
    torch.set_num_threads(2)
    out = tmp_path / "model.safetensors"
    base = ["train-rvos", "--model", name, "--data", str(synth), "--out", str(out)]
    assert main([*base, "--steps", "2", "--checkpoint-every", "1", "--no-eval"]) == 0
    work = tmp_path / "model.safetensors.work"
    assert (work / "last.pt").is_file() and tokenizer_path(out).is_file()
    # a longer run resumes from step 2 (the checkpoint) instead of starting again
    assert main([*base, "--steps", "3", "--checkpoint-every", "1"]) == 0
    steps = [json.loads(line).get("step") for line in (work / "log.jsonl").read_text().splitlines()]
    assert 3 in steps
    trained = load_trained(out)
    assert trained.spec.name == name and "valid_JF" in trained.facts
    result = evaluate(trained.producer(), trained.tokenizer, synth, "valid")
    assert 0.0 <= result.JF <= 1.0 and result.expressions >= 1
    assert pytest.approx(trained.facts["valid_JF"], abs=1e-4) == result.JF
