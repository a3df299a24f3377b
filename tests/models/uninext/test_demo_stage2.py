"""The demo graph with its stage-II producer = the in-repo tiny UNINEXT (shipped weights).

The other producers are imports of corrupted ground truth (tests/pipeline/flow_fixtures.py), so
this runs the real UNINEXT producer inside the Prefect flow, through the producer plugin and
the demo's ``configs/producer/uninext_tiny.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.orchestration.config import WEIGHTS_DIR
from tests.pipeline.test_flow import prefect_api  # noqa: F401 - the module's Prefect server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


def test_demo_stage2_runs_the_in_repo_uninext(tmp_path: Path) -> None:
    from pipeline.orchestration.flow import lsvos_2stage
    from tests.pipeline.flow_fixtures import demo_with_imports

    if not (WEIGHTS_DIR / "uninext_tiny.safetensors").is_file():
        pytest.skip("weights/uninext_tiny.safetensors is not in this checkout")
    overrides = [
        o for o in demo_with_imports(tmp_path, videos=2) if not o.startswith("producers.uninext")
    ]
    overrides = [o for o in overrides if o != "producer@producers.uninext=import"]
    state = lsvos_2stage(overrides=overrides, return_state=True)
    assert state.is_completed(), state
    summary = state.result()
    assert summary["submission"]["valid"], summary["submission"]["problems"]
    assert {"uninext", "v2", "stage2", "final"} <= set(summary["scores"])
    assert 0.0 <= summary["scores"]["uninext"]["JF"] <= 1.0
