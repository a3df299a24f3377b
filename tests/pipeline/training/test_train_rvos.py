"""``lsvos train-rvos`` end to end on a tiny synthetic benchmark: train, resume, ship, score."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from pipeline.core.data import write_synthetic_benchmark
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


def test_family_models_have_one_query_variants() -> None:
    models = registered_models()
    for family in ("referformer", "mutr", "soc"):
        several, one = models[f"{family}-tiny"], models[f"{family}-tiny-1q"]
        assert several.default_config(50)["num_queries"] > 1
        assert one.default_config(50)["num_queries"] == 1
        assert {k: v for k, v in one.default_config(50).items() if k != "num_queries"} == {
            k: v for k, v in several.default_config(50).items() if k != "num_queries"
        }
        assert one.family == several.family and min(one.clips.short_sides) > min(
            several.clips.short_sides
        )


@pytest.mark.parametrize("name", ["sgmg-tiny", "sgmg-multi-tiny", "mutr-tiny-1q"])
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


def test_init_fine_tunes_a_file_with_other_clips_and_records_its_short_side(
    synth: Path, tmp_path: Path
) -> None:
    from pipeline.adapters.producers import producer_from_config
    from pipeline.adapters.weights import load_project_weights
    from pipeline.orchestration.config import ProducerConfig, ProducerFamily

    torch.set_num_threads(2)
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    base = ["train-rvos", "--data", str(synth), "--no-eval", "--steps", "1"]
    assert main([*base, "--model", "sgmg-tiny", "--out", str(first)]) == 0
    assert load_trained(first).short_side == 160  # the model's default, recorded
    # a zero learning rate keeps the initial weights: the new file starts from the first one
    tune = [*base, "--init", str(first), "--out", str(second), "--lr", "0", "--frames", "2"]
    assert main([*tune, "--short-sides", "144,176", "--test-short-side", "176"]) == 0
    a, b = load_trained(first), load_trained(second)
    for key, value in a.model.state_dict().items():
        torch.testing.assert_close(b.model.state_dict()[key], value, rtol=0, atol=0)
    assert b.spec.name == "sgmg-tiny" and b.short_side == 176
    assert b.facts["frames"] == 2 and b.facts["short_sides"] == [144, 176]
    commands = b.trained_with.split(" && ")
    assert len(commands) == 2 and "--init" in commands[1] and "--init" not in commands[0]
    assert b.tokenizer.vocab_size == a.tokenizer.vocab_size
    # the pipeline's producer runs at the recorded short side unless its options say otherwise
    settings = ProducerConfig(family=ProducerFamily("sgmg"), checkpoint=str(second))
    assert producer_from_config(settings, "ytvos").protocol.short_side == 176
    options = replace(settings, options={"short_side": 128})
    assert producer_from_config(options, "ytvos").protocol.short_side == 128
    assert '"short_side": 176' in load_project_weights(second).metadata["lsvos.inference"]


def test_init_and_clip_options_are_checked(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    base = ["train-rvos", "--data", str(synth), "--out", str(out), "--steps", "1"]
    with pytest.raises(SystemExit):  # argparse: not sizes
        main([*base, "--model", "sgmg-tiny", "--short-sides", "144,big"])
    assert main([*base]) == 2  # neither --model nor --init
    assert main([*base, "--init", str(tmp_path / "missing.safetensors")]) == 2
    assert main([*base, "--model", "sgmg-tiny", "--no-eval"]) == 0
    tuned = tmp_path / "y.safetensors"
    wrong = ["train-rvos", "--data", str(synth), "--out", str(tuned), "--init", str(out)]
    assert main([*wrong, "--model", "sgmg-multi-tiny"]) == 2  # the file holds sgmg-tiny
