"""The compute budget (pipeline/orchestration/budget.py): workers x threads per worker = the
cores by default, the typed setting, the count each worker computes with (thread workers and a
worker process), the process pool's single-threaded workers, and model builds locked per key
(pipeline/adapters/build_cache.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.adapters.build_cache import BuildCache
from pipeline.core.errors import UserError
from pipeline.core.parallel import available_cores, process_imap
from pipeline.orchestration.budget import resolve_budget
from pipeline.orchestration.config import RuntimeConfig, compose_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("cores", "workers", "threads", "expected"),
    [
        (2, 2, None, 1),  # the 2-core machine: two workers of one thread each
        (2, 1, None, 2),
        (16, 2, None, 8),
        (16, 3, None, 5),  # never more threads than cores
        (3, 2, None, 1),
        (1, 4, None, 1),  # at least one thread each
        (16, 2, 3, 3),  # an explicit setting wins
    ],
)
def test_resolved_budget_for_core_counts(
    cores: int, workers: int, threads: int | None, expected: int
) -> None:
    budget = resolve_budget(RuntimeConfig(workers=workers, threads_per_worker=threads), cores)
    assert (budget.workers, budget.threads, budget.cores) == (workers, expected, cores)
    if threads is None:
        assert workers * budget.threads <= max(cores, workers)


def test_the_default_budget_counts_this_process_cores() -> None:
    assert available_cores() == len(os.sched_getaffinity(0))
    budget = resolve_budget(RuntimeConfig(workers=1))
    assert budget.threads == available_cores()
    assert budget.describe().startswith(f"1 worker x {budget.threads} thread")


@pytest.mark.parametrize(
    ("workers", "threads", "named"),
    [
        (0, None, "runtime.workers"),
        (2, 0, "runtime.threads_per_worker"),
        (2, -1, "runtime.threads"),
    ],
)
def test_a_budget_below_one_is_refused_by_name(
    workers: int, threads: int | None, named: str
) -> None:
    with pytest.raises(UserError, match=re.escape(named)):
        resolve_budget(RuntimeConfig(workers=workers, threads_per_worker=threads), cores=2)


def test_threads_per_worker_is_typed_in_the_schema() -> None:
    assert compose_config([]).runtime.threads_per_worker is None  # auto
    assert compose_config(["runtime.threads_per_worker=3"]).runtime.threads_per_worker == 3
    with pytest.raises(
        UserError, match=re.escape("runtime.threads_per_worker: 'many' is not an int")
    ):
        compose_config(["runtime.threads_per_worker=many"])


def _seen_by_work(monkeypatch: pytest.MonkeyPatch, runtime: RuntimeConfig, kind: str) -> list:
    """The (torch, OpenCV) thread counts a node task's work sees, run by two pool threads as
    the thread runner runs them."""
    import cv2
    import torch

    from pipeline.orchestration import flow
    from pipeline.orchestration.nodes import run as node_run

    seen: list[tuple[int, int]] = []

    def fake_run(job: Any, video: str) -> dict[str, Any]:
        seen.append((torch.get_num_threads(), cv2.getNumThreads()))
        return {"node": job.name, "video": video}

    monkeypatch.setattr(node_run, "run_node_video", fake_run)
    jobs = [SimpleNamespace(name=f"n{i}", kind=kind) for i in range(4)]
    with ThreadPoolExecutor(max_workers=runtime.workers) as pool:
        list(pool.map(lambda job: flow.node_video_task.fn(job, "v", False, runtime), jobs))
    return seen


def test_the_setting_reaches_torch_in_thread_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        for threads in (2, 1):
            runtime = RuntimeConfig(workers=2, threads_per_worker=threads)
            assert _seen_by_work(monkeypatch, runtime, "propagate") == [(threads, threads)] * 4
            assert _seen_by_work(monkeypatch, runtime, "vote") == [(threads, threads)] * 4
        auto = RuntimeConfig(workers=2)
        expected = max(1, available_cores() // 2)
        assert _seen_by_work(monkeypatch, auto, "produce") == [(expected, expected)] * 4
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


WORKER_PROCESS = """
import sys
from types import SimpleNamespace
import torch
from pipeline.orchestration import flow
from pipeline.orchestration.config import RuntimeConfig
from pipeline.orchestration.nodes import run as node_run

def fake_run(job, video):
    print(torch.get_num_threads(), flush=True)
    return {}

node_run.run_node_video = fake_run
runtime = RuntimeConfig(workers=int(sys.argv[1]), threads_per_worker=None)
flow.node_video_task.fn(SimpleNamespace(name="n", kind="propagate"), "v", False, runtime)
"""


def test_the_setting_reaches_torch_in_a_worker_process() -> None:
    """A Dask worker is a process of its own: the task sets that process's count (here 1 of
    the affinity's cores for a budget of as many workers, against torch's default of all)."""
    cores = available_cores()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OMP_NUM_THREADS", None)  # torch's default would be every core
    for workers, expected in ((cores, 1), (1, cores)):
        out = subprocess.run(
            [sys.executable, "-c", WORKER_PROCESS, str(workers)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.split() == [str(expected)], out.stderr[-2000:]


def _worker_threads(shared: None, item: int) -> tuple[str | None, int]:
    import cv2

    return os.environ.get("OMP_NUM_THREADS"), cv2.getNumThreads()


def test_process_pool_workers_compute_single_threaded() -> None:
    assert list(process_imap(_worker_threads, [1, 2, 3], None, workers=2)) == [("1", 1)] * 3


def test_apply_compute_budget_does_not_import_torch_for_a_vote() -> None:
    script = (
        "import sys\n"
        "from pipeline.orchestration.budget import apply_compute_budget\n"
        "from pipeline.orchestration.config import RuntimeConfig\n"
        "assert apply_compute_budget(RuntimeConfig(workers=1, threads_per_worker=1),"
        " load_torch=False) == 1\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_model_builds_wait_per_key_not_for_each_other() -> None:
    cache: BuildCache[str] = BuildCache()
    slow_started, release = threading.Event(), threading.Event()
    builds: list[str] = []

    def slow() -> str:
        builds.append("slow")
        slow_started.set()
        assert release.wait(10)
        return "slow model"

    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(cache.get, "a", None, slow)
        assert slow_started.wait(10)
        same_key = pool.submit(cache.get, "a", None, lambda: builds.append("again") or "x")
        # another key builds and returns while "a" is still building
        assert cache.get("b", None, lambda: "fast model") == "fast model"
        assert not first.done() and not same_key.done()
        release.set()
        assert first.result(10) == same_key.result(10) == "slow model"
    assert builds == ["slow"]  # the waiting task reused the one build


def test_a_failed_build_is_raised_again_until_its_checkpoint_changes(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"broken")
    cache: BuildCache[str] = BuildCache()
    attempts: list[int] = []

    def failing() -> str:
        attempts.append(1)
        raise UserError("cannot read the checkpoint")

    for _ in range(2):
        with pytest.raises(UserError, match="cannot read"):
            cache.get("k", str(checkpoint), failing)
    assert len(attempts) == 1
    checkpoint.write_bytes(b"fixed checkpoint")
    assert cache.get("k", str(checkpoint), lambda: "model") == "model"
    assert cache.get("k", str(checkpoint), failing) == "model"
