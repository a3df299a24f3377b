"""The demo graph with its stage-II producer = the in-repo tiny UNINEXT (shipped weights).

The other producers are imports of corrupted ground truth (tests/pipeline/flow_fixtures.py), so
this runs the real UNINEXT producer inside the Prefect flow, through the producer plugin and
the demo's ``configs/producer/uninext_tiny.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import WEIGHTS_DIR

pytestmark = pytest.mark.slow


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
        patch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
        yield str(PREFECT_API_URL.value())
    patch.undo()


def test_demo_stage2_runs_the_in_repo_uninext(prefect_api: str, tmp_path: Path) -> None:
    from pipeline.flow import lsvos_2stage
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
