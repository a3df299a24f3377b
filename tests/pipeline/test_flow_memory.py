"""Peak memory of the flow's tasks: model tasks one at a time, freed heap returned after each."""

from __future__ import annotations

import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

import pipeline.core.memory as memory
import pipeline.orchestration.nodes.run as node_run
from pipeline.orchestration.flow import MODEL_KINDS, node_video_task


def _run_side_by_side(monkeypatch: pytest.MonkeyPatch, kinds: list[str]) -> tuple[int, int]:
    """Run one task per kind on two threads; (the most that computed at once, trims)."""
    lock = threading.Lock()
    state = {"now": 0, "most": 0, "trims": 0}

    def fake_run(job: Any, video: str) -> dict[str, Any]:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return {"node": job.name, "video": video}

    def fake_trim() -> bool:
        state["trims"] += 1
        return True

    monkeypatch.setattr(node_run, "run_node_video", fake_run)
    monkeypatch.setattr(memory, "release_freed_memory", fake_trim)
    work = node_video_task.fn  # the plain function under the Prefect task
    threads = [
        threading.Thread(target=work, args=(SimpleNamespace(name=f"n{i}", kind=kind), "v"))
        for i, kind in enumerate(kinds)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return state["most"], state["trims"]


def test_model_tasks_compute_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (the demo's 7 GB peak): two producer videos ran side by side on the thread
    runner, each with its own activations; model tasks now take turns."""
    assert {"produce", "propagate"} <= MODEL_KINDS
    most, trims = _run_side_by_side(monkeypatch, ["produce", "propagate"])
    assert most == 1
    assert trims == 2


def test_other_tasks_still_run_alongside(monkeypatch: pytest.MonkeyPatch) -> None:
    most, _ = _run_side_by_side(monkeypatch, ["produce", "vote"])
    assert most == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_freed_memory_on_glibc() -> None:
    assert memory.release_freed_memory() is True
