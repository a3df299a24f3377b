"""Propagations inside the recipe search: the augmented recipe's propagate nodes are nodes like
any other (computed by the node code, cached, scored exactly as the flow scores them), the
search votes over them, and a written recipe holding them re-runs to the searched figure.

The run: the demo graph on a small synthetic split with imported corrupted-ground-truth
producers and random tiny AOT / DeAOT engines (``tests/pipeline/flow_fixtures.py``), nodes
computed by the node functions (no Prefect).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from pipeline.core.vote import VoteSpec
from pipeline.orchestration.config import CONFIG_DIR, PropagateNode, compose_config
from pipeline.orchestration.nodes.run import run_node_video
from pipeline.orchestration.nodes.vote import vote_spec
from pipeline.orchestration.prepare import prepare_run
from pipeline.orchestration.recipe import Recipe
from pipeline.orchestration.report.write import summarise_scores
from pipeline.orchestration.score import fresh_scores
from pipeline.orchestration.tune.augment import (
    base_engines,
    base_producers,
    node_overrides,
    propagation_name,
    propagations,
    read_run,
    stage_vote,
)
from pipeline.orchestration.tune.evaluate import Evaluator
from pipeline.orchestration.tune.held_out import recipe_overrides, with_split
from pipeline.orchestration.tune.recipe_file import tuned_recipe, write_recipe
from pipeline.orchestration.tune.run_nodes import nodes_of
from pipeline.orchestration.tune.search import choose, default_space
from pipeline.orchestration.tune.space import SearchSpace
from tests.pipeline.flow_fixtures import demo_with_imports

SOURCES = ("soc", "sgmg")
ENGINES = ("aot", "deaot")


def compute(plan) -> int:
    """Run every (node, video) task the plan has left; how many there were."""
    done = 0
    for job in plan.jobs:
        for video in plan.todo[job.name]:
            run_node_video(job, video)
            done += 1
    return done


def node_jf(plan, name: str) -> float:
    """The run report's J&F of a node, by the flow's own score code."""
    job = plan.job(name)
    rows = [row for video in plan.videos for row in fresh_scores(plan, job, video)]
    return summarise_scores(rows)[name]["JF"]


@pytest.fixture(scope="module")
def augmented(tmp_path_factory: pytest.TempPathFactory):
    """``(overrides, plan, tasks)``: the demo plus ``tp_<soc|sgmg>_<aot|deaot>``, those four
    and their producers computed (``tasks``: how many (node, video) tasks that took)."""
    root = tmp_path_factory.mktemp("tune_propagate")
    base = demo_with_imports(root, videos=2)
    recipe = Recipe.from_config(compose_config(base))
    added = propagations(recipe, SOURCES, ENGINES)
    overrides = [*base, *node_overrides(added)]
    plan = prepare_run(compose_config(overrides), nodes=list(added), run_name="augmented")
    return overrides, plan, compute(plan)


@pytest.fixture(scope="module")
def evaluator(augmented) -> Evaluator:
    overrides, _, _ = augmented
    return Evaluator(nodes_of(compose_config(overrides)))


def test_the_augmented_recipe_adds_one_propagation_per_source_and_engine() -> None:
    cfg = compose_config(["recipe=demo", "dataset=synth"])
    recipe = Recipe.from_config(cfg)
    assert base_engines(recipe) == ["aot", "deaot"]
    assert base_producers(recipe) == ["soc", "mutr", "referformer", "sgmg", "uninext"]
    added = propagations(recipe, ["sgmg", "v1"], ["deaot"])
    assert added == {
        "tp_sgmg_deaot": PropagateNode(source="sgmg", engine="deaot", stage="tune"),
        "tp_v1_deaot": PropagateNode(source="v1", engine="deaot", stage="tune"),
    }
    composed = compose_config(["recipe=demo", "dataset=synth", *node_overrides(added)])
    for name, node in added.items():
        assert composed.recipe.nodes[name] == node  # the overrides say exactly the nodes
    with pytest.raises(UserError, match=r"engines \['cutie'\] are not used"):
        propagations(recipe, ["sgmg"], ["cutie"])
    spec = VoteSpec(
        ("sgmg", "soc"), (1.5, 0.5), min_votes=2.0, pairs=True, odd_policy="own_threshold",
        odd_min_votes=1.0, key_frame_source="sgmg",
    )  # fmt: skip
    name, vote = stage_vote(spec, 1)
    composed = compose_config(["recipe=demo", "dataset=synth", *node_overrides({name: vote})])
    assert name == "tv1"
    assert vote_spec(composed.recipe.nodes[name]) == spec  # type: ignore[arg-type]


def test_propagations_are_scored_exactly_as_the_flow_scores_them(augmented, evaluator) -> None:
    _, plan, tasks = augmented
    assert tasks == (len(SOURCES) + len(SOURCES) * len(ENGINES)) * len(plan.videos)
    run = evaluator.run
    for source in SOURCES:
        for engine in ENGINES:
            name = propagation_name(source, engine)
            assert run.nodes[name].kind == "propagate"
            assert node_jf(plan, name) == evaluator.node_score(name, plan.videos).JF
    # the random engines change the masks: a propagation is a source of its own
    assert evaluator.node_score("tp_sgmg_aot", plan.videos) != evaluator.node_score(
        "sgmg", plan.videos
    )


def test_a_second_search_computes_no_propagation_again(augmented) -> None:
    overrides, _, _ = augmented
    again = prepare_run(compose_config(overrides), run_name="again")
    added = [n for n in again.todo if n.startswith("tp_")]
    assert sorted(added) == sorted(
        propagation_name(s, e) for s in SOURCES for e in ENGINES
    )  # every one planned, none with work left
    assert all(not again.todo[n] for n in added)


def test_the_search_votes_over_propagations(evaluator) -> None:
    videos = evaluator.run.videos
    sources = [*SOURCES, *(propagation_name(s, e) for s in SOURCES for e in ENGINES)]
    space = default_space(evaluator, sources, max_sources=2)
    result = choose(evaluator, space, videos)
    tried = {s for r in result.ranked for s in r.candidate.sources}
    assert tried == set(sources)
    best_single = max(evaluator.node_score(s, videos).JF for s in sources)
    assert best_single <= result.ranked[0].score.JF
    # only the two best sources on these videos are voted
    top = default_space(evaluator, sources, max_sources=2, top_sources=2)
    best_two = sorted(sources, key=lambda s: -evaluator.node_score(s, videos).JF)[:2]
    voted = {s for r in choose(evaluator, top, videos).ranked for s in r.candidate.sources}
    assert voted == set(best_two)


def test_top_sources_keeps_the_best_in_run_order() -> None:
    space = SearchSpace(("a", "b", "c", "d"), top_sources=2, exhaustive_up_to=2)
    assert space.pool({"a": 0.1, "b": 0.5, "c": 0.4, "d": 0.2}) == ("b", "c")
    assert space.exhaustive  # two sources voted: every subset
    assert SearchSpace(("a", "b"), top_sources=3).pool({"a": 0, "b": 1}) == ("a", "b")
    with pytest.raises(UserError, match="top_sources must be at least 1"):
        SearchSpace(("a",), top_sources=0)


def test_a_written_recipe_with_propagations_reruns_to_the_searched_score(
    augmented, evaluator, tmp_path: Path
) -> None:
    overrides, _, _ = augmented
    videos = evaluator.run.videos
    spec = VoteSpec(("tp_sgmg_aot", "sgmg", "tp_soc_deaot"), min_votes=2.0)
    searched = evaluator.score(spec, videos).JF
    configs = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR / "recipe", configs / "recipe")
    data, node = tuned_recipe(evaluator.run, spec, name="tuned_p", description="t")
    assert set(data["recipe"]["nodes"]) == {"soc", "sgmg", "tp_sgmg_aot", "tp_soc_deaot", node}
    path = configs / "recipe" / "tuned_p.yaml"
    write_recipe(path, data, ["a test"])
    keep = [o for o in overrides if o.startswith(("dataset", "runtime"))]
    selection = recipe_overrides(path)
    assert selection[1] == f"hydra.searchpath=[file://{configs.resolve()}]"
    cfg = compose_config([*selection, *keep])  # found through the search path
    assert cfg.recipe.submission == node
    plan = prepare_run(cfg, run_name="tuned")
    assert {n for n, todo in plan.todo.items() if todo} == {node}  # propagations cached
    # recomputed from the producers through the node code: the same masks, the same figure
    plan = prepare_run(cfg, run_name="tuned", refresh_nodes=["tp_sgmg_aot", "tp_soc_deaot"])
    assert {n for n, todo in plan.todo.items() if todo} == {"tp_sgmg_aot", "tp_soc_deaot", node}
    compute(plan)
    assert node_jf(plan, node) == searched


def test_held_out_overrides_replace_the_split_and_find_the_recipe(tmp_path: Path) -> None:
    assert with_split(["recipe=demo", "dataset.split=valid", "x=1"], "test") == [
        "recipe=demo",
        "x=1",
        "dataset.split=test",
    ]
    assert recipe_overrides(CONFIG_DIR / "recipe" / "tuned.yaml") == ["recipe=tuned"]
    with pytest.raises(UserError, match="folder named 'recipe'"):
        recipe_overrides(tmp_path / "tuned.yaml")


def test_a_run_record_reads_the_report(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(
        '{"scores": {"sgmg": {"JF": 0.6, "J": 0.5, "F": 0.7}}, '
        '"computed": {"sgmg": 2, "tp_sgmg_aot": 0}, "cached": {"tp_sgmg_aot": 2}}'
    )
    record = read_run(tmp_path)
    assert record.scores == {"sgmg": 0.6}
    assert record.computed_tasks == 2
    assert record.cached == {"tp_sgmg_aot": 2}
    with pytest.raises(UserError, match=r"no report\.json"):
        read_run(tmp_path / "missing")


def test_propagating_needs_the_overrides_not_a_run_folder(tmp_path: Path, capsys) -> None:
    from pipeline.cli import main

    assert main(["tune", str(tmp_path), "--propagate"]) == 2
    assert "give the base run's Hydra overrides" in capsys.readouterr().err
