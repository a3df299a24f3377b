"""Recipe search (``lsvos tune``): candidates scored from cached masks are the vote node's own
scores, the cross-validation is what it says, and the written recipe re-runs to the figure.

The run: the demo graph on a small synthetic split with imported corrupted-ground-truth
producers, its producers and stage-I vote computed by the node functions (no Prefect).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import UserError
from pipeline.core.scoring import j_and_f
from pipeline.core.vote import VoteSpec, vote_video
from pipeline.orchestration.config import CONFIG_DIR, compose_config
from pipeline.orchestration.nodes.run import run_node_video
from pipeline.orchestration.nodes.vote import vote_spec
from pipeline.orchestration.prepare import prepare_run
from pipeline.orchestration.report.write import summarise_scores
from pipeline.orchestration.score import fresh_scores
from pipeline.orchestration.tune.evaluate import Evaluator
from pipeline.orchestration.tune.keyframes import rank_key_frames
from pipeline.orchestration.tune.recipe_file import tuned_recipe, write_recipe
from pipeline.orchestration.tune.run_nodes import load_run, nodes_of
from pipeline.orchestration.tune.search import choose, default_space, make_folds, tune
from pipeline.orchestration.tune.space import SearchSpace
from tests.pipeline.flow_fixtures import demo_with_imports

REPO = Path(__file__).resolve().parents[2]
PRODUCERS = ("soc", "mutr", "referformer", "sgmg")


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory: pytest.TempPathFactory):
    """``(overrides, plan)`` of the demo with imported producers, ``v1`` and its inputs done."""
    root = tmp_path_factory.mktemp("tune")
    overrides = demo_with_imports(root, videos=3)
    plan = prepare_run(compose_config(overrides), nodes=["v1"], run_name="base")
    for job in plan.jobs:
        for video in plan.todo[job.name]:
            run_node_video(job, video)
    return overrides, plan


@pytest.fixture(scope="module")
def evaluator(run_setup) -> Evaluator:
    overrides, _ = run_setup
    return Evaluator(nodes_of(compose_config(overrides)))


def node_jf(plan, name: str) -> float:
    """The run report's J&F of a node, by the flow's own score code."""
    job = plan.job(name)
    rows = [row for video in plan.videos for row in fresh_scores(plan, job, video)]
    return summarise_scores(rows)[name]["JF"]


def test_the_run_lists_complete_nodes_and_skips_the_rest(run_setup, evaluator) -> None:
    _, plan = run_setup
    run = evaluator.run
    assert list(run.nodes) == [*PRODUCERS, "v1"]
    assert set(run.missing) == {"uninext", "stage1", "v2", "stage2", "final"}
    assert {n: run.nodes[n].out_dir for n in run.nodes} == {
        n: plan.job(n).out_dir for n in run.nodes
    }
    assert run.submission is None  # "final" is not computed
    with pytest.raises(UserError, match=r"\['stage1'\] are not complete nodes"):
        default_space(evaluator, ["sgmg", "stage1"])


def test_a_run_folder_names_the_same_nodes(run_setup, evaluator) -> None:
    _, plan = run_setup
    from_folder = load_run([plan.run_dir])
    assert from_folder.run_dir == Path(plan.run_dir)
    assert from_folder.nodes == evaluator.run.nodes
    with pytest.raises(UserError, match=r"no config\.json"):
        load_run([str(Path(plan.run_dir).parent)])


def test_a_candidate_equal_to_a_vote_node_scores_exactly_that_node(run_setup, evaluator) -> None:
    _, plan = run_setup
    spec = vote_spec(plan.job("v1").node)  # type: ignore[arg-type]
    expected = node_jf(plan, "v1")
    assert expected == evaluator.score(spec, plan.videos).JF
    assert expected == evaluator.node_score("v1", plan.videos).JF
    assert node_jf(plan, "sgmg") == evaluator.node_score("sgmg", plan.videos).JF
    evaluations = evaluator.evaluations
    evaluator.score(spec, plan.videos)  # asked again: from memory
    assert evaluator.evaluations == evaluations


def test_the_grid_lists_each_vote_once_with_reachable_whole_thresholds() -> None:
    space = SearchSpace(("a", "b", "c"))
    jf = {"a": 0.5, "b": 0.3, "c": 0.4}
    candidates = space.candidates(("a", "b"), jf)
    specs = [c.spec for c in candidates]
    assert len(set(specs)) == len(specs)
    weightings = {c.weighting for c in candidates}
    assert weightings == {"equal", "score", "lead:a", "lead:b"}
    for c in candidates:
        spec = c.spec
        group = sum(spec.source_weights) * (2 if spec.pairs else 1)
        assert 0 < spec.min_votes <= group  # type: ignore[operator]
        if spec.integer_weights:
            assert float(spec.min_votes).is_integer()  # type: ignore[arg-type]
    score = next(c for c in candidates if c.weighting == "score")
    assert score.spec.weights == (1.25, 0.75)  # J&F / mean J&F
    single = space.candidates(("a",), jf)
    assert {c.weighting for c in single} == {"equal"}
    # one source, no pairs: every fraction is the source's own mask, one candidate
    assert len([c for c in single if not c.spec.pairs]) == 1


def test_folds_partition_the_videos_and_follow_the_seed() -> None:
    videos = [f"v{i}" for i in range(7)]
    folds = make_folds(videos, 3, seed=1)
    assert sorted(v for f in folds for v in f) == videos
    assert sorted(len(f) for f in folds) == [2, 2, 3]
    assert make_folds(videos, 3, seed=1) == folds
    assert make_folds(videos, 3, seed=2) != folds
    with pytest.raises(UserError, match="--folds"):
        make_folds(videos, 8, seed=0)


def test_cross_validation_scores_each_fold_by_the_choice_made_without_it(evaluator) -> None:
    space = default_space(evaluator, ["soc", "mutr", "sgmg", "v1"], max_sources=2)
    result = tune(evaluator, space, k=3, seed=0)
    videos = evaluator.run.videos
    rows = []
    for fold in result.folds:
        train = [v for v in videos if v not in fold.held_out]
        assert fold.chosen == choose(evaluator, space, train).best
        assert fold.held_out_score == evaluator.score(fold.chosen.spec, fold.held_out)
        rows += [(v, fold.chosen.spec) for v in fold.held_out]
    pooled = evaluator.pooled(dict(rows))
    assert result.cv == pooled
    assert result.final.best == choose(evaluator, space, videos).best
    assert result.final.method == "exhaustive"
    # singles are candidates: the choice is at least the best source on the split
    best_single = max(evaluator.node_score(s, videos).JF for s in space.sources)
    assert best_single <= result.final.ranked[0].score.JF
    assert list(result.base_nodes) == ["v1"]


def test_a_beam_search_keeps_the_best_subsets(evaluator) -> None:
    videos = evaluator.run.videos
    space = default_space(evaluator, max_sources=3, beam=1, exhaustive_up_to=2)
    result = choose(evaluator, space, videos)
    assert result.method == "beam"
    assert result.subsets == 5 + 4 + 3  # singles, then extensions of the one best subset
    sizes = {len(r.candidate.sources) for r in result.ranked}
    assert sizes == {1, 2, 3}


def test_the_written_recipe_reruns_to_the_searched_score(run_setup, evaluator, tmp_path) -> None:
    overrides, _ = run_setup
    space = default_space(evaluator, ["soc", "referformer", "sgmg", "v1"], max_sources=2)
    chosen = choose(evaluator, space, evaluator.run.videos).ranked[0]
    with_key_frames = rank_key_frames(
        evaluator, chosen.candidate.spec, space, evaluator.run.videos
    )[0].spec
    configs = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, configs)
    data, node = tuned_recipe(evaluator.run, with_key_frames, name="tuned", description="t")
    write_recipe(configs / "recipe" / "tuned.yaml", data, ["a test"])
    keep = [o for o in overrides if o.startswith(("dataset", "runtime"))]
    cfg = compose_config(["recipe=tuned", *keep], config_dir=configs)
    assert cfg.recipe.submission == node
    assert vote_spec(cfg.recipe.nodes[node]) == with_key_frames  # type: ignore[arg-type]
    plan = prepare_run(cfg, run_name="tuned")
    assert {name for name, todo in plan.todo.items() if todo} == {node}  # inputs all cached
    for video in plan.todo[node]:
        run_node_video(plan.job(node), video)
    assert node_jf(plan, node) == chosen.score.JF
    hand_written = configs / "recipe" / "demo.yaml"
    with pytest.raises(UserError, match="not written by `lsvos tune`"):
        write_recipe(hand_written, data, [])


def test_soft_votes_only_over_sources_scored_as_the_recipe_will_run(evaluator) -> None:
    space = default_space(evaluator, modes=("hard", "soft"))
    assert space.soft_sources == {"v1"}  # imported PNGs keep no probabilities; v1 is hard
    assert space.probability_sources == set()  # over masks alone soft = hard: none tried
    assert not [c for c in space.candidates(("v1",), {"v1": 0.5}) if c.spec.mode == "soft"]
    grid = SearchSpace(
        ("a", "b", "c"),
        modes=("hard", "soft"),
        soft_sources=frozenset({"a", "b"}),
        probability_sources=frozenset({"a"}),
    )
    jf = {"a": 0.5, "b": 0.5, "c": 0.5}
    soft = [c for c in grid.candidates(("a", "b"), jf) if c.spec.mode == "soft"]
    thresholds = {c.spec.prob_threshold for c in soft}
    assert thresholds == set(grid.prob_thresholds)
    assert all(c.spec.min_votes is None for c in soft)
    for subset in (("b",), ("a", "c")):  # no probabilities; a source not soft-votable
        assert not [c for c in grid.candidates(subset, jf) if c.spec.mode == "soft"]


def test_the_command_prints_the_numbers_and_imports_no_torch_or_prefect(
    run_setup, tmp_path
) -> None:
    _, plan = run_setup
    out = tmp_path / "tuned.yaml"
    probe = (
        "import sys\n"
        "from pipeline.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('HEAVY', [m for m in ('torch', 'prefect') if m in sys.modules], rc)\n"
    )
    args = [plan.run_dir, "--folds", "2", "--max-sources", "2", "--sources", *PRODUCERS]
    proc = subprocess.run(
        [sys.executable, "-c", probe, "tune", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY [] 0", proc.stdout + proc.stderr
    assert "| tuned search |" in proc.stdout
    assert "| best single producer |" in proc.stdout
    assert "J&F: tuned (CV)" in proc.stdout
    assert out.read_text().startswith("# @package _global_\n# Written by `lsvos tune`")


def test_a_vote_of_one_node_is_its_masks(evaluator) -> None:
    videos = evaluator.run.videos
    alone = evaluator.score(VoteSpec(("sgmg",), min_votes=1.0), videos)
    assert alone == evaluator.node_score("sgmg", videos)


def test_key_frame_options_are_judged_on_the_frame_they_pick(evaluator) -> None:
    videos = evaluator.run.videos
    spec = VoteSpec(("soc", "sgmg"), pairs=True, min_votes=2.0, odd_min_votes=1.0)
    space = default_space(evaluator, ["soc", "sgmg"])
    options = rank_key_frames(evaluator, spec, space, videos)
    described = {o.describe() for o in options}
    assert described == {
        "keyframe_from soc (score rule)",
        "keyframe_from sgmg (score rule)",
        "agreement rule",
    }
    for option in options:  # key frames never change the masks
        assert evaluator.score(option.spec, videos) == evaluator.score(spec, videos)
    by_sgmg = next(o for o in options if o.spec.key_frame_source == "sgmg")
    values = []
    for video in videos:
        fused, _ = vote_video(
            [evaluator.tracks(s, video) for s in spec.sources], evaluator.order(video), spec
        )
        for exp, track in evaluator.tracks("sgmg", video).items():
            k = int(np.argmax(track.scores))
            j, f = j_and_f(fused[exp].masks[k : k + 1], evaluator.truth(video)[exp][k : k + 1])
            values.append((j[0] + f[0]) / 2)
    assert by_sgmg.key_frame_jf == pytest.approx(float(np.mean(values)), abs=1e-12)
