"""Config composition, recipe validation, cache keys and preflight (no Prefect run needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from pipeline.orchestration.config import LsvosConfig, compose_config
from pipeline.orchestration.prepare import prepare_run
from pipeline.orchestration.recipe import Recipe
from tests.pipeline.flow_fixtures import demo_with_imports, plan_keys


def test_shipped_recipes_compose_and_validate() -> None:
    demo = Recipe.from_config(compose_config([]))
    assert demo.submission == "final"
    assert [n.name for n in demo.nodes][:4] == ["soc", "mutr", "referformer", "sgmg"]
    winners = compose_config(
        ["recipe=lsvos2023", "dataset=ytvos", "dataset.root=/data"]
        + [
            f"producers.{p}.checkpoint=/ckpt/{p}.pth"
            for p in ("soc", "mutr", "referformer_ft", "vit_huge", "convnext")
        ]
        + ["engines.aot.checkpoint=/ckpt/aot.pth", "engines.deaot.checkpoint=/ckpt/deaot.pth"]
    )
    graph = Recipe.from_config(winners)
    # the winners' four votes, exactly as their scripts ran them
    votes = {n.name: n.config for n in graph.nodes if n.kind == "vote"}
    assert set(votes) == {"v1", "en2", "v2", "final"}
    assert votes["v1"].sources == ["soc", "mutr", "referformer_ft"]
    assert votes["v1"].min_votes == 3 and votes["v1"].keyframe_from == "soc"
    assert votes["en2"].sources == ["a1", "a_soc", "a_mutr", "a_rf"]
    assert (votes["en2"].min_votes, votes["en2"].odd_min_votes) == (4, 3)
    assert votes["v2"].sources == ["vit_huge", "convnext", "soc"]
    assert votes["v2"].sigmoid_twice_compat is True
    assert votes["final"].sources == ["d2", "d_vit", "en2", "d_rf"]
    assert all(v.pairs for v in votes.values())
    assert winners.engines["aot"].scales == [0.8, 1.0, 1.2]
    assert winners.engines["aot"].flip is True
    assert winners.engines["aot"].mask_unused_ids is False
    # d_convnext is computed but feeds nothing, as in the released code
    assert not any("d_convnext" in n.inputs for n in graph.nodes)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("engines.aot.flp=true", "engines.aot.flp"),
        ("recipe.nodes.v1.min_vote=3", "recipe.nodes.v1.min_vote"),
        ("runtime.workers=many", "runtime.workers"),
        ("recipe=lsvos2023", "checkpoint"),  # official checkpoints are required values
    ],
)
def test_config_errors_name_the_key(override: str, named: str) -> None:
    with pytest.raises(UserError, match=named.replace(".", r"\.")):
        compose_config([override])


def _with_node(node: str, **changes: object) -> LsvosConfig:
    cfg = compose_config([])
    cfg.recipe.nodes[node] = replace(cfg.recipe.nodes[node], **changes)
    return cfg


def test_recipe_errors() -> None:
    cfg = _with_node("v1", sources=["soc", "nope"])
    with pytest.raises(UserError, match=r"recipe\.nodes\.v1\.sources: 'nope' is not a node"):
        Recipe.from_config(cfg)
    with pytest.raises(UserError, match="cycle"):
        Recipe.from_config(_with_node("v1", sources=["soc", "final"]))
    with pytest.raises(UserError, match=r"engine: 'sam2' is not configured"):
        Recipe.from_config(_with_node("stage1", engine="sam2"))
    with pytest.raises(UserError, match="not one of its sources"):
        Recipe.from_config(_with_node("v1", keyframe_from="uninext"))


def test_selection_takes_what_nodes_need() -> None:
    recipe = Recipe.from_config(compose_config([]))
    assert [n.name for n in recipe.select(nodes=["v1"])] == [
        "soc",
        "mutr",
        "referformer",
        "sgmg",
        "v1",
    ]
    stage2 = {n.name for n in recipe.select(stages=["stage2"])}
    assert {"uninext", "v2", "stage2", "stage1", "v1"} <= stage2 and "final" not in stage2
    assert recipe.descendants(["uninext"]) == {"uninext", "v2", "stage2", "final"}
    with pytest.raises(UserError, match="unknown stage"):
        recipe.select(stages=["stage3"])


def test_stage_two_change_keeps_stage_one_keys(tmp_path: Path) -> None:
    overrides = demo_with_imports(tmp_path, videos=1)
    before = plan_keys(compose_config(overrides))
    after = plan_keys(compose_config([*overrides, "engines.deaot.flip=true"]))
    assert {name for name in before if before[name] != after[name]} == {"stage2", "final"}
    vote = plan_keys(compose_config([*overrides, "recipe.nodes.v1.min_votes=5"]))
    differ = {n for n, k in vote.items() if k != before[n]}
    assert differ == {"v1", "stage1", "v2", "stage2", "final"}
    # a stage label or a device names no output
    relabelled = [*overrides, "recipe.nodes.v1.stage=other", "engines.aot.device=cuda:1"]
    assert plan_keys(compose_config(relabelled)) == before


def test_missing_paths_fail_before_any_work(tmp_path: Path) -> None:
    overrides = demo_with_imports(tmp_path, videos=1)
    out = tmp_path / "fresh-outputs"
    bad = [*overrides, f"runtime.output_root={out}", "engines.aot.checkpoint=/no/such/aot.pth"]
    with pytest.raises(
        UserError, match=r"engines\.aot\.checkpoint: file not found: /no/such/aot\.pth"
    ):
        prepare_run(compose_config(bad))
    bad = [*overrides, f"runtime.output_root={out}", "producers.sgmg.predictions=/no/preds"]
    with pytest.raises(UserError, match=r"producers\.sgmg\.predictions: not found: /no/preds"):
        prepare_run(compose_config(bad))
    bad = [
        *overrides,
        f"runtime.output_root={out}",
        f"dataset.root={tmp_path / 'no-dataset'}",
        "dataset.synthetic=null",
    ]
    with pytest.raises(UserError, match=r"dataset\.root: folder not found: .*no-dataset"):
        prepare_run(compose_config(bad))
    assert not out.exists(), "a failed preflight must not start any work"
