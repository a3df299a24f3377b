"""Every config group option and every shipped recipe composes into the typed schema and plans.

Required values (``???``: checkpoints, dataset roots, import folders) are filled with small
files made here; the plan is built by the pure :func:`pipeline.orchestration.plan.make_plan` on
a synthetic split, so nothing is run and nothing is written beside the test's folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from pipeline.core.data import open_dataset, write_synthetic_benchmark
from pipeline.orchestration.config import (
    CONFIG_DIR,
    DatasetFormat,
    EngineConfig,
    EngineFamily,
    LsvosConfig,
    ProduceNode,
    ProducerConfig,
    ProducerFamily,
    PropagateNode,
    RuntimeConfig,
    TaskRunnerKind,
    VoteNode,
    compose_config,
    register_schema,
)
from tests.pipeline.flow_fixtures import plan_keys


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


DATASETS, PRODUCERS, ENGINES = _options("dataset"), _options("producer"), _options("engine")
RECIPES, RUNTIMES = _options("recipe"), _options("runtime")


def test_every_group_has_options() -> None:
    assert {"synth", "ytvos", "davis", "mevis"} <= set(DATASETS)
    assert {"demo", "card", "lsvos2023"} <= set(RECIPES)
    assert len(PRODUCERS) >= 12 and len(ENGINES) >= 4 and {"local", "dask"} <= set(RUNTIMES)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic split in the YouTube-VOS layout, the same videos in the MeViS layout, a
    dummy checkpoint file and an (empty) predictions folder."""
    root = tmp_path_factory.mktemp("schema")
    synth = write_synthetic_benchmark(
        root / "synth", seed=1, videos=1, splits=("valid",), sizes=((48, 64),)
    )
    mevis = root / "mevis"
    shutil.copytree(synth / "valid" / "JPEGImages", mevis / "valid_u" / "JPEGImages")
    split = open_dataset("ytvos", synth, "valid")
    videos = {
        v.id: {
            "frames": list(v.frame_ids),
            "expressions": {
                e.id: {"exp": e.text, "obj_id": list(e.obj_ids), "anno_id": [e.id]}
                for e in split.expressions(v.id)
            },
        }
        for v in split.videos()
    }
    (mevis / "valid_u" / "meta_expressions.json").write_text(json.dumps({"videos": videos}))
    checkpoint = root / "model.pth"
    checkpoint.write_bytes(b"not read by the plan, only identified by content")
    predictions = root / "predictions"
    predictions.mkdir()
    return {
        "ytvos": synth,
        "davis": synth,
        "mevis": mevis,
        "synth": synth,
        "checkpoint": checkpoint,
        "predictions": predictions,
        "outputs": root / "outputs",
    }


def _missing(overrides: list[str]) -> list[str]:
    """The required (``???``) keys the composed config leaves unset."""
    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return sorted(OmegaConf.missing_keys(compose("config", overrides=overrides)))
    finally:
        GlobalHydra.instance().clear()


def _compose(overrides: list[str], places: dict[str, Path], dataset: str = "synth") -> LsvosConfig:
    """``overrides`` on ``dataset`` with every required value filled from ``places``."""
    overrides = [f"dataset={dataset}", *overrides, f"runtime.output_root={places['outputs']}"]
    if dataset in ("synth", "synth_mevis"):  # default roots under the outputs: the made ones
        made = places["synth" if dataset == "synth" else "mevis"]
        overrides += [f"dataset.root={made}", "dataset.synthetic=null"]
    fills = []
    for key in _missing(overrides):
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "checkpoint":
            fills.append(f"{key}={places['checkpoint']}")
        elif leaf == "predictions":
            fills.append(f"{key}={places['predictions']}")
        elif key == "dataset.root":
            fills.append(f"{key}={places[dataset]}")
        else:
            pytest.fail(f"no test value for the required key {key}")
    return compose_config([*overrides, *fills])


@pytest.mark.parametrize("dataset", DATASETS)
def test_dataset_option_composes_and_plans(dataset: str, places: dict[str, Path]) -> None:
    cfg = _compose([], places, dataset)
    assert isinstance(cfg.dataset.format, DatasetFormat)
    if dataset in ("mevis", "synth_mevis"):
        assert cfg.dataset.split == "valid_u"
    keys = plan_keys(cfg, nodes=["soc"])
    assert set(keys) == {"soc"} and keys["soc"]


@pytest.mark.parametrize("option", PRODUCERS)
def test_producer_option_composes_and_plans(option: str, places: dict[str, Path]) -> None:
    """Each producer option, as an extra producer and in place of the demo's SgMg."""
    extra = _compose([f"+producer@producers.extra={option}"], places)
    producer = extra.producers["extra"]
    assert isinstance(producer, ProducerConfig) and isinstance(producer.family, ProducerFamily)
    assert producer.is_import == (option == "import")
    swapped = _compose([f"producer@producers.sgmg={option}"], places)
    assert swapped.producers["sgmg"] == producer
    keys = plan_keys(swapped, nodes=["v1"])
    assert {"soc", "mutr", "referformer", "sgmg", "v1"} <= set(keys)


@pytest.mark.parametrize("option", ENGINES)
def test_engine_option_composes_and_plans(option: str, places: dict[str, Path]) -> None:
    extra = _compose([f"+engine@engines.extra={option}"], places)
    engine = extra.engines["extra"]
    assert isinstance(engine, EngineConfig) and isinstance(engine.family, EngineFamily)
    swapped = _compose([f"engine@engines.aot={option}"], places)
    assert swapped.engines["aot"] == engine
    assert "stage1" in plan_keys(swapped, nodes=["stage1"])


@pytest.mark.parametrize("recipe", RECIPES)
def test_shipped_recipe_composes_into_typed_nodes_and_plans(
    recipe: str, places: dict[str, Path]
) -> None:
    cfg = _compose([f"recipe={recipe}"], places)
    kinds = {ProduceNode: "produce", VoteNode: "vote", PropagateNode: "propagate"}
    for name, node in cfg.recipe.nodes.items():
        assert kinds[type(node)] == node.kind, name
    keys = plan_keys(cfg)
    assert set(keys) == set(cfg.recipe.nodes)
    assert len(set(keys.values())) == len(keys)  # every node has its own key
    assert cfg.recipe.submission in keys


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_option_composes(runtime: str, places: dict[str, Path]) -> None:
    cfg = _compose([f"runtime={runtime}"], places)
    assert isinstance(cfg.runtime, RuntimeConfig)
    assert isinstance(cfg.runtime.task_runner, TaskRunnerKind)
    assert str(cfg.runtime.task_runner) == {"local": "thread", "dask": "dask"}.get(runtime, "")


def test_schema_families_are_the_libraries_registries() -> None:
    """A family the schema accepts is one the libraries build, and the other way round."""
    from models.build import PRODUCER_FAMILIES
    from vos.build import ENGINE_FAMILIES

    assert {str(f) for f in ProducerFamily} == {*PRODUCER_FAMILIES, "import"}
    assert {str(f) for f in EngineFamily} == set(ENGINE_FAMILIES)
