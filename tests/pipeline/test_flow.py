"""The Prefect flow on a small synthetic split, under a test Prefect server.

Producers are imports of seeded corrupted ground truth and the engines are small random-weight
AOT/DeAOT networks (tests/pipeline/flow_fixtures.py): these tests check orchestration, caching
and re-runs, not segmentation quality.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.masks import MaskSet
from pipeline.core.submission import validate
from tests.pipeline.flow_fixtures import demo_with_imports

STAGE_ONE = {"soc", "mutr", "referformer", "sgmg", "v1", "stage1"}


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
    with prefect_test_harness(server_startup_timeout=180):
        url = str(PREFECT_API_URL.value())
        patch.setenv("PREFECT_API_URL", url)  # for worker and child processes
        yield url
    patch.undo()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flow-inputs")
    demo_with_imports(root, videos=2)
    return root


def _overrides(inputs: Path, output_root: Path, *extra: str) -> list[str]:
    base = [o for o in demo_with_imports(inputs, videos=2) if not o.startswith("runtime.output")]
    return [*base, f"runtime.output_root={output_root}", *extra]


def _task_run_names(flow_run_ids: list[str]) -> list[str]:
    """Names of the task runs of the given flow runs (and their sub-flow runs)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    with get_client(sync_client=True) as client:
        ids = list(flow_run_ids)
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=ids)
            ),
            sort=FlowRunSort.ID_DESC,
            limit=200,
        )
        ids += [str(f.id) for f in subflows]
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
            sort=TaskRunSort.ID_DESC,
            limit=200,
        )
    return [r.name for r in runs]


def _run(overrides: list[str], **kwargs: object) -> tuple[dict, str]:
    from pipeline.orchestration.flow import lsvos_2stage

    state = lsvos_2stage(overrides=overrides, return_state=True, **kwargs)
    assert state.is_completed(), state
    return state.result(), str(state.state_details.flow_run_id)


def test_flow_gives_a_valid_submission_and_a_report(prefect_api: str, inputs: Path) -> None:
    out = inputs / "outputs-main"
    summary, run_id = _run(_overrides(inputs, out))
    sub = summary["submission"]
    assert sub["valid"], sub["problems"]
    from pipeline.core.data import open_dataset

    dataset = open_dataset("ytvos", inputs / "synth", "valid")
    assert validate(sub["zip"], dataset.meta, "ytvos", frame_root=dataset.frame_root) == []
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "report.md").read_text().count("|") > 40
    assert set(summary["scores"]) == {"soc", "mutr", "referformer", "sgmg", "v1", "stage1",
                                      "uninext", "v2", "stage2", "final"}  # fmt: skip
    # a vote of noisy producers beats the average producer (the fixtures' errors are independent)
    producers = np.mean([summary["scores"][p]["JF"] for p in ("soc", "mutr", "referformer")])
    assert summary["scores"]["v1"]["JF"] > producers
    names = _task_run_names([run_id])
    assert sum(n.startswith("stage1/") for n in names) == 2  # one task per (node, video)

    # A stage-II change recomputes stage II only: no stage-I task runs at all.
    summary2, run_id2 = _run(_overrides(inputs, out, "engines.deaot.flip=true"))
    assert set(summary2["computed"]) == {"stage2", "final"}
    names2 = [n for n in _task_run_names([run_id2]) if "/" in n and not n.startswith("score/")]
    assert {n.split("/")[0] for n in names2} == {"stage2", "final"}
    assert not any(n.split("/")[0] in STAGE_ONE for n in names2)

    # Deleting one video's output of one node recomputes that pair and its dependents only.
    stage1 = MaskSet(_node_dir(run_dir, "stage1"))
    video = stage1.videos()[0]
    stage1.discard(video)
    summary3, _ = _run(_overrides(inputs, out, "engines.deaot.flip=true"))
    assert summary3["computed"] == {"stage1": 1, "v2": 1, "stage2": 1, "final": 1}


def _node_dir(run_dir: Path, node: str) -> str:
    import json

    return json.loads((run_dir / "report.json").read_text())["nodes"][node]["dir"]


def test_interrupted_run_resumes_to_a_byte_identical_zip(prefect_api: str, inputs: Path) -> None:
    killed = inputs / "outputs-killed"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pipeline.cli", "run", *_overrides(inputs, killed)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:  # kill once stage I has finished part of its work
            done = list(killed.glob("cache/*/stage1-*/videos/*.json"))
            if done or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list(killed.glob("runs/*/submission.zip"))
    resumed, _ = _run(_overrides(inputs, killed))
    assert sum(resumed["computed"].values()) < 20  # finished work was kept
    fresh, _ = _run(_overrides(inputs, inputs / "outputs-fresh"))
    assert (
        Path(resumed["submission"]["zip"]).read_bytes()
        == Path(fresh["submission"]["zip"]).read_bytes()
    )


def test_dask_task_runner_gives_the_same_masks(prefect_api: str, inputs: Path) -> None:
    pytest.importorskip("prefect_dask")
    thread_out, dask_out = inputs / "outputs-thread", inputs / "outputs-dask"
    a, _ = _run(_overrides(inputs, thread_out, "runtime.score=false"), nodes=["v1"])
    b, _ = _run(
        _overrides(inputs, dask_out, "runtime=dask", "runtime.workers=1", "runtime.score=false"),
        nodes=["v1"],
    )
    assert sum(b["computed"].values()) == 10  # 4 imports + the vote, on 2 videos
    left = MaskSet(_node_dir(Path(a["run_dir"]), "v1"))
    right = MaskSet(_node_dir(Path(b["run_dir"]), "v1"))
    assert left.videos() == right.videos()
    for video in left.videos():
        assert left.key_frames(video) == right.key_frames(video)
        for exp in left.expressions(video):
            assert np.array_equal(left.read(video, exp).masks, right.read(video, exp).masks)
