"""The MeViS recipes in their official-checkpoint form (``lsvos2024``: UNINEXT-Cutie;
``sam2_refine``: producers, SAM 2, vote) and the producers' MeViS configs: they compose with
``dataset=mevis``, validate as graphs, plan on a synthetic MeViS split, say what they need, and
(slow) run through the flow to a valid MeViS zip with stand-ins for the official files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.commands.run import CONFIG_DIR, describe_configs
from pipeline.core.data import open_dataset
from pipeline.core.data.synth_mevis import write_synthetic_mevis_benchmark
from pipeline.core.errors import UserError
from pipeline.core.io import encode_mask_png
from pipeline.core.submission import validate
from pipeline.orchestration.config import LsvosConfig, PropagateNode, VoteNode, compose_config
from pipeline.orchestration.prepare import check_run
from pipeline.orchestration.recipe import Recipe
from tests.pipeline.flow_fixtures import corrupt, plan_keys

CHECKPOINTS = {
    "lsvos2024": ("producers.uninext", "engines.cutie"),
    "sam2_refine": ("producers.mutr", "producers.uninext", "engines.sam2"),
}


@pytest.fixture(scope="module")
def mevis_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mevis_recipes") / "mevis"
    return write_synthetic_mevis_benchmark(root, seed=1, videos=2, splits=("valid_u", "valid"))


def _compose(recipe: str, root: Path, tmp: Path, *extra: str) -> LsvosConfig:
    overrides = [f"recipe={recipe}", "dataset=mevis", f"dataset.root={root}"]
    overrides += [f"{c}.checkpoint={tmp / c.split('.')[1]}.pth" for c in CHECKPOINTS[recipe]]
    overrides += [f"runtime.output_root={tmp / 'outputs'}", *extra]
    return compose_config(overrides)


def test_lsvos2024_is_the_winners_graph(mevis_root: Path, tmp_path: Path) -> None:
    cfg = _compose("lsvos2024", mevis_root, tmp_path)
    graph = Recipe.from_config(cfg)
    assert (graph.submission, graph.package_format) == ("final", "mevis")
    assert [(n.name, n.kind) for n in graph.nodes] == [
        ("uninext", "produce"),
        ("cutie", "propagate"),
        ("final", "vote"),
    ]
    producer = cfg.producers["uninext"]
    assert (producer.family, producer.variant) == ("uninext", "vith")
    assert producer.options == {"short_side": 480, "max_size": 1333}  # UNINEXT's own test size
    cutie = graph.by_name["cutie"].config
    assert isinstance(cutie, PropagateNode)
    # the key frame: argmax of UNINEXT's per-frame scores
    assert cutie.source == "uninext" and cutie.key_frame_node == "uninext"
    engine = cfg.engines[cutie.engine]
    assert (engine.family, engine.variant) == ("cutie", "base")
    assert engine.reset_between_passes is True  # a fresh Cutie for the backward pass
    assert (engine.long_term_gap, engine.max_long_term) == (5, 4)  # Cutie's eval settings
    final = graph.by_name["final"].config
    assert isinstance(final, VoteNode)
    assert final.sources == ["cutie"] and final.min_votes is None and not final.pairs
    # the chosen details are parameters: S votes too, memory carried into the backward pass
    both = _compose(
        "lsvos2024",
        mevis_root,
        tmp_path,
        "recipe.nodes.final.sources=[cutie,uninext]",
        "engines.cutie.reset_between_passes=false",
    )
    assert Recipe.from_config(both).by_name["final"].inputs == ("cutie", "uninext")
    assert both.engines["cutie"].reset_between_passes is False


def test_sam2_refine_propagates_each_producer(mevis_root: Path, tmp_path: Path) -> None:
    cfg = _compose("sam2_refine", mevis_root, tmp_path)
    graph = Recipe.from_config(cfg)
    assert (graph.submission, graph.package_format) == ("final", "mevis")
    kinds = {n.name: n.kind for n in graph.nodes}
    assert kinds == {
        "mutr": "produce",
        "uninext": "produce",
        "sam2_mutr": "propagate",
        "sam2_uninext": "propagate",
        "final": "vote",
    }
    for producer in ("mutr", "uninext"):
        node = graph.by_name[f"sam2_{producer}"].config
        assert isinstance(node, PropagateNode)
        assert node.source == producer and node.key_frame_node == producer
        assert cfg.engines[node.engine].family == "sam2"
    engine = cfg.engines["sam2"]
    assert engine.variant == "sam2.1_hiera_large" and engine.reset_between_passes is False
    assert cfg.producers["mutr"].options == {"short_side": 432}  # MUTR's MeViS test size
    final = graph.by_name["final"].config
    assert isinstance(final, VoteNode)
    assert final.sources == ["sam2_mutr", "sam2_uninext", "mutr", "uninext"]
    assert final.min_votes is None and not final.pairs  # 2 of 4, ties to foreground
    older = _compose("sam2_refine", mevis_root, tmp_path, "engine@engines.sam2=sam2_hiera_large")
    assert older.engines["sam2"].variant == "sam2_hiera_large"


@pytest.mark.parametrize("recipe", sorted(CHECKPOINTS))
def test_recipes_plan_on_a_mevis_split(recipe: str, mevis_root: Path, tmp_path: Path) -> None:
    cfg = _compose(recipe, mevis_root, tmp_path)
    keys = plan_keys(cfg)
    assert set(keys) == set(cfg.recipe.nodes)
    assert len(set(keys.values())) == len(keys)
    # a propagation setting re-plans the propagations and the vote, not the producers
    engine = next(iter(cfg.engines))
    changed = plan_keys(_compose(recipe, mevis_root, tmp_path, f"engines.{engine}.flip=true"))
    produced = {n for n, c in cfg.recipe.nodes.items() if c.kind == "produce"}
    assert {n for n in keys if keys[n] != changed[n]} == set(keys) - produced
    # the server's split (no ground truth) plans the same graph
    assert set(plan_keys(_compose(recipe, mevis_root, tmp_path, "dataset.split=valid"))) == set(
        keys
    )


@pytest.mark.parametrize("recipe", sorted(CHECKPOINTS))
def test_recipes_name_what_they_need(recipe: str, mevis_root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        compose_config([f"recipe={recipe}", "dataset=mevis", f"dataset.root={mevis_root}"])
    for needed in CHECKPOINTS[recipe]:
        assert f"{needed}.checkpoint" in str(err.value)
    cfg = _compose(recipe, mevis_root, tmp_path)
    with pytest.raises(UserError, match="cannot start the run") as err:
        check_run(cfg)
    for needed in CHECKPOINTS[recipe]:
        path = tmp_path / f"{needed.split('.')[1]}.pth"
        assert f"{needed}.checkpoint: file not found: {path}" in str(err.value)


def test_run_help_lists_the_recipes_and_their_stages() -> None:
    text = describe_configs()
    for recipe in CHECKPOINTS:
        line = next(line for line in text.splitlines() if line.strip().startswith(recipe))
        assert "MeViS" in line
    assert "stage propagate: cutie" in text
    assert "stage propagate: sam2_mutr, sam2_uninext" in text
    assert "uninext_vith_mevis" in text and "mutr_vswinb_mevis" in text


MEVIS_PRODUCERS = sorted(p.stem for p in (CONFIG_DIR / "producer").glob("*_mevis.yaml"))


@pytest.mark.parametrize("name", MEVIS_PRODUCERS)
def test_mevis_producer_configs_extend_their_base(name: str) -> None:
    """Each ``<base>_mevis.yaml`` is ``<base>.yaml`` with only its MeViS settings changed, and
    its comment says where they come from or that none are published."""
    base = name.removesuffix("_mevis")
    cfg = compose_config(
        [
            f"+producer@producers.mevis={name}",
            f"+producer@producers.base={base}",
            "producers.mevis.checkpoint=/c.pth",
            "producers.base.checkpoint=/c.pth",
        ]
    )
    mevis, plain = cfg.producers["mevis"], cfg.producers["base"]
    own = yaml.safe_load((CONFIG_DIR / "producer" / f"{name}.yaml").read_text())
    assert own["defaults"] == [base, "_self_"]
    assert set(own) <= {"defaults", "options"}
    assert mevis.options == {**plain.options, **own.get("options", {})}
    assert (mevis.family, mevis.variant, mevis.tokenizer) == (
        plain.family,
        plain.variant,
        plain.tokenizer,
    )
    comment = (CONFIG_DIR / "producer" / f"{name}.yaml").read_text().split("defaults:")[0]
    assert "MeViS" in comment and "union" in comment and "checkpoint:" in comment


# ---------------------------------------------------------------------------------------------
# end to end through the flow (slow: a Prefect server starts)


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("PREFECT_HOME", str(home))
    patch.setenv("PREFECT_LOCAL_STORAGE_PATH", str(home / "storage"))
    patch.setenv("DO_NOT_TRACK", "1")
    patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=240):
        patch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
        yield os.environ["PREFECT_API_URL"]
    patch.undo()


def _imported(root: Path, data: Path, name: str, seed: int) -> list[str]:
    """A producer imported from ground truth with seeded errors: MeViS-layout PNGs + scores."""
    ds = open_dataset("mevis", data, "valid_u")
    out = root / f"pred_{name}"
    rng = np.random.default_rng(seed)
    scores: dict[str, dict[str, list[float]]] = {}
    for video in ds.videos():
        scores[video.id] = {}
        for exp in ds.expressions(video.id):
            masks = corrupt(ds.ground_truth(video.id, exp.id), rng)
            (out / video.id / exp.id).mkdir(parents=True, exist_ok=True)
            for frame, mask in zip(video.frame_ids, masks, strict=True):
                (out / video.id / exp.id / f"{frame}.png").write_bytes(encode_mask_png(mask))
            scores[video.id][exp.id] = [float(v) for v in rng.random(video.num_frames)]
    (out / "scores.json").write_text(json.dumps(scores))
    return [
        f"producer@producers.{name}=import",
        f"producers.{name}.predictions={out}",
        f"producers.{name}.scores={out / 'scores.json'}",
    ]


def write_random_cutie_tiny(path: Path, seed: int) -> None:
    """A project weights file of the tiny Cutie (vos/cutie/spec.py) with seeded random weights."""
    from dataclasses import asdict

    import torch

    from pipeline.adapters.weights import save_project_weights
    from vos.cutie.network import CutieNetwork
    from vos.cutie.spec import CUTIE_TINY

    torch.manual_seed(seed)
    state = CutieNetwork(CUTIE_TINY).state_dict()
    save_project_weights(path, "cutie", asdict(CUTIE_TINY), state)


def write_random_sam2_tiny(path: Path, seed: int, image_size: int = 256) -> None:
    """A project weights file of SAM 2.1 hiera-tiny at a small square input, seeded random."""
    from dataclasses import asdict

    import torch

    from pipeline.adapters.weights import save_project_weights
    from vos.sam2.model import Sam2Model
    from vos.sam2.spec import get_sam2_variant

    torch.manual_seed(seed)
    spec = get_sam2_variant("sam2.1_hiera_tiny", image_size=image_size)
    save_project_weights(path, "sam2", asdict(spec), Sam2Model(spec).state_dict())


def _task_count(output_root: Path) -> int:
    """(node, video) outputs a run under ``output_root`` computed, from its newest report."""
    (report,) = sorted(output_root.glob("runs/*/report.json"))[-1:]
    return sum(json.loads(report.read_text())["computed"].values())


@pytest.mark.slow
def test_recipes_run_on_mevis_to_a_valid_zip(prefect_api: str, tmp_path: Path) -> None:
    """Both graphs through the flow on a small synthetic MeViS valid_u with their own engine
    families, Cutie (the tiny variant) and SAM 2.1 hiera-tiny (at 256 px), seeded random
    weights (no checkpoint of theirs here), producers imported: every node completes, the
    submission is a valid MeViS zip, lsvos2024's one-source vote is its Cutie output; a second
    run computes nothing, and a changed engine setting recomputes its node and the vote only."""
    from pipeline.orchestration.flow import lsvos_2stage

    data = write_synthetic_mevis_benchmark(
        tmp_path / "mevis", seed=2, videos=2, splits=("valid_u",), sizes=((64, 96),)
    )
    cutie, sam2 = tmp_path / "cutie_tiny.safetensors", tmp_path / "sam2_tiny.safetensors"
    write_random_cutie_tiny(cutie, seed=7)
    write_random_sam2_tiny(sam2, seed=7)
    meta = data / "valid_u" / "meta_expressions.json"
    for recipe, engine_name, producers, engine_overrides in (
        ("lsvos2024", "cutie", ("uninext",), ["engine@engines.cutie=cutie_tiny"]),
        ("sam2_refine", "sam2", ("mutr", "uninext"), ["engines.sam2.checkpoint=" + str(sam2)]),
    ):
        overrides = [
            f"recipe={recipe}",
            "dataset=mevis",
            f"dataset.root={data}",
            f"runtime.output_root={tmp_path / recipe}",
            "runtime.workers=2",
            "runtime.progress=false",
            *engine_overrides,
            f"engines.{engine_name}.device=cpu",
            f"engines.{engine_name}.precision=fp32",
        ]
        if engine_name == "cutie":
            overrides.append(f"engines.cutie.checkpoint={cutie}")
        for seed, name in enumerate(producers):
            overrides += _imported(tmp_path, data, name, seed)
        cfg = compose_config(overrides)
        assert cfg.engines[engine_name].family == engine_name
        state = lsvos_2stage(overrides=overrides, return_state=True)
        assert state.is_completed(), state
        submission = state.result()["submission"]
        assert submission["format"] == "mevis" and submission["valid"], submission
        assert validate(submission["zip"], meta, "mevis") == []
        report = json.loads((Path(submission["zip"]).parent / "report.json").read_text())
        assert set(report["scores"]) == set(report["nodes"])  # every node scored
        if recipe == "lsvos2024":  # the vote of one source is that source
            by_node: dict[str, list[tuple[float, float]]] = {}
            for row in report["per_expression"]:
                by_node.setdefault(row["node"], []).append((row["J"], row["F"]))
            assert by_node["final"] == by_node["cutie"]
        nodes = len(json.loads(report_path(submission).read_text())["nodes"])
        assert _task_count(tmp_path / recipe) == nodes * 2  # every (node, video) computed
        assert lsvos_2stage(overrides=overrides, return_state=True).is_completed()
        assert _task_count(tmp_path / recipe) == 0, "a re-run recomputes nothing"
        reset = not cfg.engines[engine_name].reset_between_passes
        changed = [*overrides, f"engines.{engine_name}.reset_between_passes={str(reset).lower()}"]
        assert lsvos_2stage(overrides=changed, return_state=True).is_completed()
        downstream = [n for n, c in cfg.recipe.nodes.items() if c.kind != "produce"]
        assert _task_count(tmp_path / recipe) == len(downstream) * 2  # two videos


def report_path(submission: dict) -> Path:
    return Path(submission["zip"]).parent / "report.json"


@pytest.mark.parametrize("name", MEVIS_PRODUCERS)
def test_mevis_producer_options_are_the_familys_own(name: str) -> None:
    """The options a MeViS config sets are ones its family's MeViS protocol takes: built here
    on the family's tiny in-repo weights (the official files are not in the repository)."""
    from dataclasses import replace

    from pipeline.adapters.producers import producer_from_config
    from pipeline.orchestration.config import WEIGHTS_DIR

    cfg = compose_config([f"+producer@producers.m={name}", "producers.m.checkpoint=/c.pth"])
    official = cfg.producers["m"]
    tiny = replace(
        official,
        checkpoint=str(WEIGHTS_DIR / f"{official.family}_tiny.safetensors"),
        tokenizer=str(WEIGHTS_DIR / f"{official.family}_tiny.tokenizer.json"),
        device="cpu",
    )
    producer = producer_from_config(tiny, "mevis")
    protocol = getattr(producer, "protocol", None)
    if official.family in ("mutr", "referformer", "soc"):
        assert protocol is not None
        assert protocol.short_side == official.options["short_side"]
        assert protocol.max_size == official.options.get("max_size")
        assert protocol.clip_length is None  # the whole video, as on Ref-YouTube-VOS
