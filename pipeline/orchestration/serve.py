"""Deployment: a local Prefect server (SQLite, 127.0.0.1) and the served ``lsvos-2stage`` flows.

``lsvos serve`` starts the server when none answers (or reuses it), points the Prefect client at
it (the active profile's ``PREFECT_API_URL``, so ``prefect deployment run`` works from another
shell), registers ``lsvos-2stage/demo`` and ``lsvos-2stage/default`` and serves them: each run
executes in a fresh subprocess that imports ``pipeline/orchestration/flow.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.orchestration.flow import FLOW_NAME, lsvos_2stage

DEFAULT_PORT = 4200
DEMO_OVERRIDES = ["recipe=demo", "dataset=synth"]
QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def api_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}/api"


def server_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.read().strip() == b"true"
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@dataclass
class ServerHandle:
    """A running server; ``process`` is set only when this call started it."""

    url: str
    process: subprocess.Popen[bytes] | None
    log_path: Path | None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))


def ensure_server(port: int = DEFAULT_PORT, timeout: float = 180.0) -> ServerHandle:
    """Reuse the server answering on ``port``, or start one and wait until it is healthy."""
    url = api_url(port)
    if server_healthy(url):
        return ServerHandle(url, None, None)
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"lsvos-server-{port}.log"
    env = {**os.environ, **QUIET_ENV}
    env.pop("PREFECT_API_URL", None)  # the server itself must not point at another server
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_healthy(url):
            return ServerHandle(url, process, log_path)
        if process.poll() is not None:
            raise UserError(
                f"the Prefect server exited with status {process.returncode}; see {log_path}"
            )
        time.sleep(0.5)
    process.terminate()
    raise UserError(
        f"the Prefect server did not become healthy within {timeout:.0f} s; see {log_path}"
    )


def use_server(url: str, persist: bool = True) -> None:
    """Point this process (and, with ``persist``, the active Prefect profile) at ``url``."""
    os.environ["PREFECT_API_URL"] = url
    os.environ.update({k: os.environ.get(k, v) for k, v in QUIET_ENV.items()})
    if persist:
        subprocess.run(
            [sys.executable, "-m", "prefect", "config", "set", f"PREFECT_API_URL={url}"],
            check=True,
            capture_output=True,
        )


def serve_deployments(limit: int | None = 1) -> None:
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
    serve(demo, default, limit=limit, print_starting_message=True)


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
    port: int = DEFAULT_PORT, overrides: Sequence[str] = (), keep_server: bool = False
) -> Path:
    """The README's main command: the demo through the real deployment path.

    Starts (or reuses) the local server, starts ``lsvos serve`` in a subprocess, triggers
    ``lsvos-2stage/demo`` through the API exactly as ``prefect deployment run`` does, waits for
    the run, and returns its ``report.md``. The serve process (and a server started here, unless
    ``keep_server``) is stopped at the end.
    """
    server = ensure_server(port)
    use_server(server.url, persist=True)
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    serve = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)],
        env={**os.environ, **QUIET_ENV, "PREFECT_API_URL": server.url},
    )
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
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
