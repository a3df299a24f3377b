"""End to end: ``lsvos run`` on a host so loaded that the Prefect server takes longer to start
than Prefect's ephemeral server allows (20 s). The real server starts, 25 s late; the run waits
for it, completes, packages a valid zip and stops the server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.orchestration import server as server_module
from tests.pipeline.flow_fixtures import demo_with_imports

EPHEMERAL_LIMIT_S = 20


@pytest.mark.slow
def test_lsvos_run_outlasts_a_server_slower_than_prefects_ephemeral_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_command = server_module.server_command
    delay = EPHEMERAL_LIMIT_S + 5

    def late_server(port: int) -> list[str]:
        then = real_command(port)
        python = f"import os, time; time.sleep({delay}); os.execv({then[0]!r}, {then!r})"
        return [sys.executable, "-c", python]

    monkeypatch.setattr(server_module, "server_command", late_server)
    monkeypatch.setattr(server_module, "configured_api_url", lambda: (None, "nowhere"))
    monkeypatch.setattr(server_module, "DEFAULT_PORT", server_module.free_port())
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    overrides = demo_with_imports(tmp_path / "inputs", videos=1)
    assert main(["run", *overrides]) == 0
    out = capsys.readouterr().out
    assert "(valid)" in out, out
