"""Scores cached per (node, video) beside the node's masks (pipeline/orchestration/score.py):
equal to fresh ones, scored again when the masks, the key or the ground truth change, never
trusted when torn or malformed, and the report is the same with and without them.

The run is made without Prefect or models, as in test_report.py: the demo recipe's plan on a
two-video synthetic split, every node's masks written from seeded corruptions of the truth.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.core.masks import MaskSet, Track
from pipeline.orchestration import flow, score
from pipeline.orchestration.jobs import NodeJob, RunPlan
from pipeline.orchestration.score import (
    cached_scores,
    fresh_scores,
    score_node_video,
    score_path,
)
from pipeline.orchestration.splits import open_split
from tests.pipeline.flow_fixtures import SMALL_SIZES
from tests.pipeline.test_report import write_node_masks


def make_plan(root: Path) -> RunPlan:
    """The demo recipe's plan on a two-video synthetic split, every node's masks written."""
    from pipeline.core.data import write_synthetic_benchmark
    from pipeline.core.io import atomic_write_text
    from pipeline.orchestration.cache import FileIdentities
    from pipeline.orchestration.config import compose_config, plain_data
    from pipeline.orchestration.plan import make_plan as plan_run
    from pipeline.orchestration.recipe import Recipe

    data = root / "synth"
    write_synthetic_benchmark(data, seed=0, videos=2, sizes=SMALL_SIZES)
    cfg = compose_config(
        ["recipe=demo", "dataset=synth", f"dataset.root={data}", f"runtime.output_root={root}"]
    )
    recipe = Recipe.from_config(cfg)
    dataset = replace(cfg.dataset, root=str(data.resolve()))
    files = FileIdentities(root)
    plan = plan_run(cfg, recipe, recipe.select(), dataset, open_split(dataset), files, run_name="t")
    for i, job in enumerate(plan.jobs):
        write_node_masks(plan, job.name, seed=10 + i)
    Path(plan.run_dir).mkdir(parents=True)
    atomic_write_text(Path(plan.run_dir) / "config.json", json.dumps(plain_data(cfg)))
    return plan


@pytest.fixture
def plan(tmp_path: Path) -> RunPlan:
    return make_plan(tmp_path)


class ScoringCounter:
    """Counts the calls of the scorer behind :func:`score_node_video`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = score.score_video

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(score, "score_video", counting)


def all_rows(plan: RunPlan) -> list[dict[str, Any]]:
    return [row for job in plan.jobs for v in plan.videos for row in score_node_video(plan, job, v)]


def test_cached_scores_equal_fresh_ones_and_are_not_recomputed(
    plan: RunPlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = all_rows(plan)
    assert first and all(score_path(j, v).is_file() for j in plan.jobs for v in plan.videos)
    counter = ScoringCounter(monkeypatch)
    second = all_rows(plan)
    assert counter.calls == 0  # every (node, video) read from its file
    fresh = [row for job in plan.jobs for v in plan.videos for row in fresh_scores(plan, job, v)]
    assert second == first == fresh  # exact: the JSON round trip of a float is lossless
    assert all(type(r["J"]) is float and type(r["F"]) is float for r in second)


def test_a_changed_node_is_scored_again(plan: RunPlan, monkeypatch: pytest.MonkeyPatch) -> None:
    all_rows(plan)
    job, video = plan.job("v1"), plan.videos[0]
    # another key (the node's configuration changed): another folder, nothing cached there
    moved = replace(job, key="0" * 16, out_dir=f"{job.out_dir}-changed")
    MaskSet(moved.out_dir, "rle")
    plan.jobs = [moved if j.name == job.name else j for j in plan.jobs]
    write_node_masks(plan, job.name, seed=99)
    assert cached_scores(plan, moved, video) is None
    counter = ScoringCounter(monkeypatch)
    rows = score_node_video(plan, moved, video)
    assert counter.calls == 1
    assert rows == fresh_scores(plan, moved, video)
    counter.calls = 0

    # the same key, its masks recomputed (--refresh): the masks' fingerprint tells
    other = plan.job("soc")
    before = score_node_video(plan, other, video)
    rewrite_empty(other, video)
    assert cached_scores(plan, other, video) is None
    after = score_node_video(plan, other, video)
    assert counter.calls == 1  # soc's cached rows were read, then the recomputed video scored
    assert after != before and after == fresh_scores(plan, other, video)
    assert score_node_video(plan, other, video) == after and counter.calls == 2  # now cached


def rewrite_empty(job: NodeJob, video: str) -> None:
    """Recompute ``video`` of ``job``'s mask set as a forced re-run would: other (empty) masks."""
    out = MaskSet(job.out_dir)
    expressions = out.expressions(video)
    tracks = {e: out.read(video, e) for e in expressions}
    out.discard(video)
    for exp, track in tracks.items():
        out.write(video, exp, Track(track.frame_ids, np.zeros_like(track.masks), track.scores))
    out.mark_complete(video, expressions)


def test_changed_ground_truth_is_scored_again(plan: RunPlan) -> None:
    job, video = plan.job("mutr"), plan.videos[1]
    score_node_video(plan, job, video)
    assert cached_scores(plan, job, video) is not None
    annotation = sorted((Path(plan.dataset.root) / "valid" / "Annotations" / video).iterdir())[0]
    stat = annotation.stat()
    os.utime(annotation, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # edited in place
    assert cached_scores(plan, job, video) is None


def _truncated(text: str, record: dict[str, Any]) -> str:
    return text[: len(text) // 2]


def _edited(**changes: Any) -> Any:
    def edit(text: str, record: dict[str, Any]) -> str:
        return json.dumps({**record, **changes})

    return edit


def _row_edited(**changes: Any) -> Any:
    def edit(text: str, record: dict[str, Any]) -> str:
        rows = [dict(r) for r in record["rows"]]
        rows[0].update(changes)
        return json.dumps({**record, "rows": rows})

    return edit


CORRUPTIONS = {
    "empty file": lambda text, record: "",
    "torn write": _truncated,
    "not an object": lambda text, record: "[1, 2]",
    "another format": _edited(format="lsvos-maskset"),
    "another key": _edited(key="f" * 16),
    "another scorer": _edited(scorer="0" * 16),
    "another protocol": _edited(protocol="mevis"),
    "a row short": lambda text, record: json.dumps({**record, "rows": record["rows"][:-1]}),
    "rows not a list": _edited(rows={"0": 1}),
    "another expression": _row_edited(expression="nope"),
    "J out of range": _row_edited(J=1.5),
    "F a string": _row_edited(F="0.5"),
    "J missing": lambda text, record: json.dumps(
        {**record, "rows": [{"expression": record["rows"][0]["expression"], "F": 0.5}]}
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_or_partial_score_file_is_recomputed_not_trusted(
    plan: RunPlan, corruption: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, video = plan.job("referformer"), plan.videos[0]
    good = score_node_video(plan, job, video)
    path = score_path(job, video)
    text = path.read_text()
    path.write_text(CORRUPTIONS[corruption](text, json.loads(text)))
    assert cached_scores(plan, job, video) is None
    counter = ScoringCounter(monkeypatch)
    assert score_node_video(plan, job, video) == good
    assert counter.calls == 1
    assert json.loads(path.read_text()) == json.loads(text)  # rewritten whole
    assert cached_scores(plan, job, video) == good


def test_report_is_identical_with_and_without_the_cache(
    plan: RunPlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.orchestration.report import write_report

    pairs = [(job, v) for job in plan.jobs for v in plan.videos]
    fresh = [row for job, v in pairs for row in fresh_scores(plan, job, v)]
    all_rows(plan)  # fills the cache

    def no_subflow(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("everything is cached: no score task may start")

    monkeypatch.setattr(flow.score_graph, "with_options", no_subflow)
    cached = flow.score_run(plan)
    assert cached == fresh
    reports = {}
    for name, rows in (("fresh", fresh), ("cached", cached)):
        run_dir = Path(plan.run_dir).with_name(f"run-{name}")
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text((Path(plan.run_dir) / "config.json").read_text())
        summary = write_report(replace(plan, run_dir=str(run_dir)), [], None, rows)
        reports[name] = (
            summary["table"],
            (run_dir / "report.md").read_text(),
            json.loads((run_dir / "report.json").read_text()),
        )
    assert reports["cached"] == reports["fresh"]
