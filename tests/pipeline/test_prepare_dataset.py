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


def test_the_synthetic_mevis_benchmark_is_generated_in_its_layout(tmp_path: Path) -> None:
    """``dataset=synth_mevis``: MeViS's layout under the outputs on first use, read as MeViS,
    ground truth on valid_u; a second preparation writes nothing."""
    from pipeline.orchestration.config import compose_config

    outputs = tmp_path / "outputs"
    cfg = compose_config(
        ["dataset=synth_mevis", "dataset.synthetic.videos=1", f"runtime.output_root={outputs}"]
    )
    dataset = prepare_dataset(cfg.dataset, outputs)
    root = Path(dataset.root)
    assert root == (outputs / "data" / "synth_mevis").resolve()
    assert {p.name for p in root.iterdir() if p.is_dir()} >= {"train", "valid_u", "valid"}
    split = open_dataset("mevis", root, "valid_u")
    (video,) = split.videos()
    expression = split.expressions(video.id)[0]
    assert split.ground_truth(video.id, expression.id).shape[0] == video.num_frames
    stamp = (root / "valid_u" / "meta_expressions.json").stat().st_mtime_ns
    prepare_dataset(cfg.dataset, outputs)
    assert (root / "valid_u" / "meta_expressions.json").stat().st_mtime_ns == stamp


def test_a_recipe_packages_the_datasets_own_layout() -> None:
    """``recipe.package_format`` null takes the dataset's layout; a value against it is refused."""
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.recipe import Recipe

    for dataset, layout in (("synth", "ytvos"), ("synth_mevis", "mevis"), ("davis", "ytvos")):
        cfg = compose_config(["recipe=demo", f"dataset={dataset}", "dataset.root=/d"])
        assert Recipe.from_config(cfg).package_format == layout
    cfg = compose_config(["recipe=demo", "dataset=synth_mevis", "recipe.package_format=mevis"])
    assert Recipe.from_config(cfg).package_format == "mevis"
    bad = ["recipe=demo", "dataset=synth_mevis", "recipe.package_format=ytvos"]
    with pytest.raises(UserError, match=r"recipe\.package_format: ytvos does not fit .*mevis"):
        Recipe.from_config(compose_config(bad))
    with pytest.raises(UserError, match=r"recipe\.package_format: mevis does not fit .*ytvos"):
        Recipe.from_config(compose_config(["recipe=demo", "recipe.package_format=mevis"]))
