"""Deployment: the served ``lsvos-2stage`` flows on the local server, and the demo through them.

``lsvos serve`` starts the server when none answers (or reuses it; :mod:`.server`), registers
``lsvos-2stage/demo`` and ``lsvos-2stage/default`` and serves them: each run executes in a fresh
subprocess that imports ``pipeline/orchestration/flow.py``. ``prefect deployment run`` from
another shell needs ``PREFECT_API_URL`` pointed at the server: ``lsvos serve`` prints the line to
export, and writes it into the active Prefect profile only with ``--set-profile``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.orchestration.flow import FLOW_NAME, lsvos_2stage
from pipeline.orchestration.server import (
    DEFAULT_PORT,
    DEFAULT_START_TIMEOUT,
    QUIET_ENV,
    ensure_server,
    prefect_api,
)

DEMO_OVERRIDES = ["recipe=demo", "dataset=synth"]


def serve_deployments(limit: int | None = 1, banner: bool = True) -> None:
    """Register ``lsvos-2stage/demo`` and ``lsvos-2stage/default`` and serve them (blocks)."""
    from prefect import serve

    demo = lsvos_2stage.to_deployment(
        name="demo",
        parameters={"overrides": list(DEMO_OVERRIDES)},
        description="The card's graph on the built-in synthetic benchmark with the tiny models.",
        tags=["lsvos", "demo"],
    )
    default = lsvos_2stage.to_deployment(
        name="default",
        parameters={"overrides": []},
        description="configs/config.yaml as it stands, plus the run's overrides.",
        tags=["lsvos"],
    )
    # Prefect's runner stops on SIGTERM through a coroutine it never awaits (prefect 3.8
    # runner.py); the warning says nothing a user can act on
    warnings.filterwarnings("ignore", message="coroutine 'Runner.astop' was never awaited")
    serve(demo, default, limit=limit, print_starting_message=banner)


def wait_for_deployment(name: str, timeout: float = 180.0, serve: Any = None) -> None:
    """Poll the API until deployment ``name`` (``flow/deployment``) is registered."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            try:
                client.read_deployment_by_name(name)
                return
            except ObjectNotFound:
                pass
            if serve is not None and serve.poll() is not None:
                raise UserError(f"`lsvos serve` exited with status {serve.returncode}")
            time.sleep(1.0)
    raise UserError(f"deployment {name} was not registered within {timeout:.0f} s")


def run_demo(
    port: int = DEFAULT_PORT,
    overrides: Sequence[str] = (),
    keep_server: bool = False,
    server_timeout: float = DEFAULT_START_TIMEOUT,
) -> Path:
    """The README's main command: the demo through the real deployment path.

    Starts (or reuses) the local server, starts ``lsvos serve`` in a subprocess, triggers
    ``lsvos-2stage/demo`` through the API exactly as ``prefect deployment run`` does, waits for
    the run, and returns its ``report.md``. The serve process (and a server started here, unless
    ``keep_server``) is stopped at the end.
    """
    server = ensure_server(port, server_timeout, private=not keep_server)
    from prefect.deployments import run_deployment

    serve = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port), "--quiet"],
        env={**os.environ, **QUIET_ENV, "PREFECT_API_URL": server.url},
    )
    try:
        with prefect_api(server.url):
            wait_for_deployment(f"{FLOW_NAME}/demo", serve=serve)
            run_name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
            parameters = {
                "overrides": [*DEMO_OVERRIDES, *overrides, f"runtime.run_name={run_name}"]
            }
            print(f"running deployment {FLOW_NAME}/demo (parameters {parameters})", flush=True)
            flow_run = run_deployment(f"{FLOW_NAME}/demo", parameters=parameters, timeout=None)
            state = flow_run.state
            if state is None or not state.is_completed():
                ended = state.name if state else "unknown"
                raise UserError(
                    f"the demo flow run {flow_run.name} ended {ended}: "
                    f"see its logs above or in the UI at {server.url.removesuffix('/api')}"
                )
            from pipeline.orchestration.config import compose_config

            output_root = Path(compose_config(parameters["overrides"]).runtime.output_root)
            return output_root.resolve() / "runs" / run_name / "report.md"
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
        if not keep_server:
            server.stop()
