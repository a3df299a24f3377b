"""The run report's data: report.json in graph order with unchanged numbers, the printed table,
the recipe graph a report reads (stage outputs and baselines), the stage picks and the frames.

The run folder is made here without Prefect or models: the demo recipe's plan on a two-video
synthetic split, every node's masks written from seeded corruptions of the ground truth (the
stage-I propagation exact on some expressions and empty on others, so it both helps and hurts),
scored by the pipeline's scorer and reported by ``write_report``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.core.masks import MaskSet, Track
from pipeline.orchestration.jobs import RunPlan
from tests.pipeline.flow_fixtures import SMALL_SIZES, corrupt


def make_run(root: Path) -> tuple[RunPlan, list[dict[str, Any]]]:
    """A reported demo-recipe run under ``root``: its plan and per-expression score rows."""
    from pipeline.core.data import write_synthetic_benchmark
    from pipeline.core.io import atomic_write_text
    from pipeline.orchestration.cache import FileIdentities
    from pipeline.orchestration.config import compose_config, plain_data
    from pipeline.orchestration.plan import make_plan
    from pipeline.orchestration.recipe import Recipe
    from pipeline.orchestration.report import write_report
    from pipeline.orchestration.score import score_node_video
    from pipeline.orchestration.splits import open_split

    data = root / "synth"
    write_synthetic_benchmark(data, seed=0, videos=2, sizes=SMALL_SIZES)
    cfg = compose_config(
        ["recipe=demo", "dataset=synth", f"dataset.root={data}", f"runtime.output_root={root}"]
    )
    recipe = Recipe.from_config(cfg)
    dataset = replace(cfg.dataset, root=str(data.resolve()))
    split = open_split(dataset)
    files = FileIdentities(root)
    plan = make_plan(cfg, recipe, recipe.select(), dataset, split, files, run_name="t")
    for i, job in enumerate(plan.jobs):
        write_node_masks(plan, job.name, seed=10 + i)
    rows = [row for job in plan.jobs for v in plan.videos for row in score_node_video(plan, job, v)]
    records = [{"node": job.name, "status": "computed"} for job in plan.jobs[:4]]
    Path(plan.run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(plan.run_dir) / "config.json", json.dumps(plain_data(cfg)))
    submission = {"node": "final", "zip": "submission.zip", "format": "ytvos", "valid": True}
    write_report(plan, records, {**submission, "problems": []}, rows)
    return plan, rows


def write_node_masks(plan: RunPlan, node: str, seed: int) -> None:
    """Masks for every video of ``node``: corrupted ground truth, as a run writes them: per-frame
    scores and key frames (their argmax) from producers, a vote's key frames copied from its
    ``keyframe_from``, none from propagations and other votes. The stage-I propagation is
    exact on even expressions and empty on odd ones."""
    from pipeline.orchestration.splits import open_split

    job = plan.job(node)
    dataset = open_split(plan.dataset)
    out = MaskSet(job.out_dir, "rle")
    rng = np.random.default_rng(seed)
    for video in plan.videos:
        frame_ids = dataset.video(video).frame_ids
        keys: dict[str, int] = {}
        key_from = getattr(job.node, "keyframe_from", None)
        scored = job.kind == "produce" or (job.kind == "vote" and key_from)
        for e, exp in enumerate(dataset.expressions(video)):
            gt = dataset.ground_truth(video, exp.id)
            assert gt is not None
            masks = corrupt(gt, rng)
            if node == "stage1":
                masks = gt.copy() if e % 2 == 0 else np.zeros_like(gt)
            scores = rng.random(len(frame_ids)).astype(np.float32) if scored else None
            out.write(video, exp.id, Track(frame_ids, masks, scores))
            if scores is not None:
                keys[exp.id] = int(np.argmax(scores))
        if key_from:
            keys = MaskSet(plan.job(key_from).out_dir).key_frames(video)
        if keys and job.kind != "propagate":
            out.write_key_frames(video, keys)
        out.mark_complete(video)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunPlan, list[dict[str, Any]]]:
    return make_run(tmp_path_factory.mktemp("report-run"))


def ordered_report(plan: RunPlan) -> dict[str, Any]:
    return json.loads((Path(plan.run_dir) / "report.json").read_text())


def test_report_json_keeps_graph_order_and_its_numbers(run: tuple[RunPlan, list]) -> None:
    from pipeline.orchestration.report import summarise_scores

    plan, rows = run
    report = ordered_report(plan)
    order = [job.name for job in plan.jobs]
    assert list(report["nodes"]) == order
    assert list(report["scores"]) == order
    assert report["scores"] == summarise_scores(rows)  # the same numbers, in graph order
    assert report["per_expression"] == rows
    assert report["nodes"]["stage1"]["inputs"] == ["v1"]
    assert report["nodes"]["v2"]["inputs"] == ["uninext", "stage1"]
    assert report["nodes"]["stage1"]["key_frames_from"] == "v1"
    assert report["nodes"]["soc"] == {
        "kind": "produce",
        "stage": "stage1",
        "inputs": [],
        "key_frames_from": "soc",
        "key": plan.job("soc").key,
        "dir": plan.job("soc").out_dir,
    }
    assert list(report["computed"]) == order[:4]
    assert (Path(plan.run_dir) / "report.html").is_file()


def test_printed_table_is_in_graph_order_with_kind_and_counts(run: tuple[RunPlan, list]) -> None:
    plan, _ = run
    report = ordered_report(plan)
    text = (Path(plan.run_dir) / "report.md").read_text()
    table = text[text.index("| node |") :].strip().splitlines()
    assert table[:2] == [
        "| node | stage | kind | J&F | J | F | expressions |",
        "|---|---|---|---|---|---|---|",
    ]
    for line, job in zip(table[2:], plan.jobs, strict=True):
        s = report["scores"][job.name]
        assert line == (
            f"| {job.name} | {job.stage} | {job.kind} | {100 * s['JF']:.1f} | {100 * s['J']:.1f} "
            f"| {100 * s['F']:.1f} | {s['expressions']} |"
        )


def test_graph_finds_each_stage_output_and_its_baseline(run: tuple[RunPlan, list]) -> None:
    from pipeline.orchestration.report.graph import ReportGraph

    plan, _ = run
    report = ordered_report(plan)
    graph = ReportGraph.from_report(report, plan.run_dir)
    assert graph.names == [job.name for job in plan.jobs]
    assert graph.stages() == ["stage1", "stage2", "final"]
    jf = {n: 100 * s["JF"] for n, s in report["scores"].items()}
    stage1 = graph.comparison("stage1", jf)
    assert (stage1.output, stage1.baseline) == ("stage1", plan.job("stage1").node.source)
    assert (graph.comparison("stage2", jf).output, graph.comparison("stage2", jf).baseline) == (
        "stage2",
        "v2",
    )
    final = graph.comparison("final", jf)
    sources = plan.job("final").inputs
    assert final.output == "final"
    assert final.baseline == max(sources, key=lambda s: jf[s])  # a vote: its best input
    assert graph.depths() == {
        "soc": 0, "mutr": 0, "referformer": 0, "sgmg": 0, "v1": 1, "stage1": 2,
        "uninext": 0, "v2": 3, "stage2": 4, "final": 5,
    }  # fmt: skip
    assert graph.shown_nodes("stage2") == ["stage1", "uninext", "v2", "stage2"]


def test_an_old_report_json_reads_its_graph_from_config_json(
    run: tuple[RunPlan, list], tmp_path: Path
) -> None:
    """report.json written before it kept the graph order: names sorted, no inputs."""
    from pipeline.orchestration.report.graph import ReportGraph

    plan, _ = run
    report = ordered_report(plan)
    for info in report["nodes"].values():
        del info["inputs"], info["key_frames_from"]
    old = json.loads(json.dumps(report, sort_keys=True))
    (tmp_path / "config.json").write_text((Path(plan.run_dir) / "config.json").read_text())
    graph = ReportGraph.from_report(old, tmp_path)
    new = ReportGraph.from_report(ordered_report(plan), plan.run_dir)
    assert {n.name: (n.inputs, n.key_frames_from) for n in graph.nodes} == {
        n.name: (n.inputs, n.key_frames_from) for n in new.nodes
    }
    depths = graph.depths()
    assert graph.names == sorted(graph.names, key=lambda n: (depths[n], n))
    assert graph.stages() == ["stage1", "stage2", "final"]


def test_stage_picks_rank_the_changes_of_the_output_over_its_baseline(
    run: tuple[RunPlan, list],
) -> None:
    from pipeline.orchestration.report.graph import StageComparison
    from pipeline.orchestration.report.picks import expression_jf, stage_picks

    _, rows = run
    jf = expression_jf(rows)
    picks = stage_picks(StageComparison("stage1", "stage1", "v1"), jf, per_side=3)
    deltas = {(v, e): jf[("stage1", v, e)] - jf[("v1", v, e)] for (n, v, e) in jf if n == "stage1"}
    gains = sorted((d for d in deltas.values() if d > 0), reverse=True)[:3]
    losses = sorted(d for d in deltas.values() if d < 0)[:3]
    assert [p.delta for p in picks.helped] == pytest.approx(gains)
    assert [p.delta for p in picks.hurt] == pytest.approx(losses)
    assert picks.helped and picks.hurt  # the fixture's propagation does both
    assert picks.better + picks.worse + picks.same == len(deltas)
    assert picks.mean_delta == pytest.approx(np.mean(list(deltas.values())))
    alone = stage_picks(StageComparison("s", "soc", None), jf, per_side=2)
    soc = sorted((value for (n, _, _), value in jf.items() if n == "soc"), reverse=True)
    assert [p.output_jf for p in alone.helped] == soc[:2]
    assert [p.output_jf for p in alone.hurt] == soc[::-1][:2]


def test_frame_indices_spread_over_the_video_and_hold_the_key_frame() -> None:
    from pipeline.orchestration.report.tiles import frame_indices

    assert frame_indices(26, 14) == [0, 6, 12, 14, 19, 25]
    assert frame_indices(26, None) == [0, 5, 10, 15, 20, 25]
    assert frame_indices(26, 25) == [0, 6, 12, 19, 25]
    assert frame_indices(3, 1) == [0, 1, 2]
    assert frame_indices(0, None) == []


def test_the_winners_graph_is_judged_by_its_fused_results() -> None:
    """lsvos2023: stage I ends in a vote of four propagations; stage II has four sinks, one of
    them computed and unused, and its result is the propagated vote d2."""
    import yaml

    from pipeline.orchestration.report.graph import ReportGraph, ReportNode, recipe_inputs

    repo = Path(__file__).resolve().parents[2]
    recipe = yaml.safe_load((repo / "configs/recipe/lsvos2023.yaml").read_text())["recipe"]
    graph = ReportGraph(
        [
            ReportNode(name, node["kind"], node["stage"], *recipe_inputs(name, node), "")
            for name, node in recipe["nodes"].items()
        ]
    )
    jf = dict.fromkeys(graph.names, 50.0) | {"d_rf": 60.0}
    pairs = [(c.output, c.baseline) for c in (graph.comparison(s, jf) for s in graph.stages())]
    assert pairs == [("en2", "a1"), ("d2", "v2"), ("final", "d_rf")]
    assert graph.by_name["d2"].key_frames_from == "v2"


@pytest.mark.parametrize("recipe_name", ["lsvos2023", "card"])
def test_graph_layout_keeps_boxes_apart_and_skipping_edges_off_them(recipe_name: str) -> None:
    import re

    import yaml

    from pipeline.orchestration.report.graph import ReportGraph, ReportNode, recipe_inputs
    from pipeline.orchestration.report.svg import NODE_H, NODE_W, layout_graph

    repo = Path(__file__).resolve().parents[2]
    text = (repo / f"configs/recipe/{recipe_name}.yaml").read_text()
    nodes = yaml.safe_load(text)["recipe"]["nodes"]
    graph = ReportGraph(
        [ReportNode(n, c["kind"], c["stage"], *recipe_inputs(n, c), "") for n, c in nodes.items()]
    )
    plan = layout_graph(graph)
    boxes = list(plan.at.values())
    for i, (x, y) in enumerate(boxes):
        assert 0 <= x <= plan.width - NODE_W and 0 <= y <= plan.height - NODE_H
        for x2, y2 in boxes[i + 1 :]:
            assert abs(x - x2) >= NODE_W or abs(y - y2) >= NODE_H  # no two boxes overlap
    assert {(a, b) for a, b, _ in plan.edges} == {
        (i, n.name) for n in graph.nodes for i in n.inputs
    }
    lanes = 0
    for _, _, path in plan.edges:
        line = re.search(r"(-?\d+),(-?\d+) L(-?\d+),(-?\d+)", path)
        if line is None:
            continue
        lanes += 1
        xa, lane, xb, _ = (float(v) for v in line.groups())
        assert 0 < lane < plan.height
        for x, y in boxes:  # the lane passes over no box it spans
            assert not (x < xb and xa < x + NODE_W and y <= lane <= y + NODE_H), (path, x, y)
    assert lanes > 0
