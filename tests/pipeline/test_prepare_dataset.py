"""The run's dataset preparation: a mistyped root is refused, concurrent first runs generate the
synthetic benchmark once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from pipeline.core.data import open_dataset
from pipeline.core.errors import UserError
from pipeline.orchestration.config import DatasetConfig, SynthConfig
from pipeline.orchestration.prepare import prepare_dataset


def _synth(root: Path) -> DatasetConfig:
    return DatasetConfig(root=str(root), synthetic=SynthConfig(generate=True, seed=0, videos=1))


def test_a_mistyped_root_outside_the_outputs_is_refused(tmp_path: Path) -> None:
    typo = tmp_path / "nope" / "root"
    with pytest.raises(UserError, match=r"dataset root not found: .*lsvos data synth --out"):
        prepare_dataset(_synth(typo), tmp_path / "outputs")
    assert not typo.exists() and not typo.parent.exists()


def test_the_default_root_under_the_outputs_is_generated(tmp_path: Path) -> None:
    root = tmp_path / "outputs" / "data" / "synth"
    prepare_dataset(_synth(root), tmp_path / "outputs")
    assert open_dataset("ytvos", root, "valid").video_ids()


def _prepare(args: tuple[str, str]) -> str:
    root, outputs = args
    try:
        prepare_dataset(_synth(Path(root)), outputs)
        open_dataset("ytvos", root, "valid").video_ids()
    except Exception as err:  # reported to the parent, which fails the test with it
        return f"{type(err).__name__}: {err}"
    return "ok"


def test_runs_started_together_generate_the_benchmark_once(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    root = outputs / "data" / "synth"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_prepare, [(str(root), str(outputs))] * 3)
    assert results == ["ok"] * 3
