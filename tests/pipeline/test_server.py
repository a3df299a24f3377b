"""The local Prefect server (hardening items 2, 10 and 11): a slow start is waited for, a taken
port is named, a stale ``PREFECT_API_URL`` is passed over, and no command writes the user's
Prefect profile unasked.

A small HTTP server stands in for Prefect's where only ``/api/health`` matters: it answers after
a chosen delay, as a server on a loaded host does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core.errors import UserError
from pipeline.orchestration import server as server_module
from pipeline.orchestration.server import ServerHandle, ensure_server, free_port, server_for_run

REPO = Path(__file__).resolve().parents[2]
FAKE_SERVER = textwrap.dedent(
    """
    import http.server, sys, time
    port, delay = int(sys.argv[1]), float(sys.argv[2])
    if sys.argv[3:] == ["fail"]:
        print("ERROR: [Errno 98] error while attempting to bind: address already in use")
        sys.exit(1)
    time.sleep(delay)  # a loaded host: the server answers only after this

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/api/health"
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(b"true" if ok else b"{}")

        do_POST = do_PATCH = do_PUT = do_GET

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


@pytest.fixture
def fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``set(delay, fail=False)`` makes every server start run the stand-in."""
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)

    def configure(delay: float, fail: bool = False) -> None:
        def command(port: int) -> list[str]:
            return [sys.executable, str(script), str(port), str(delay), *(["fail"] if fail else [])]

        monkeypatch.setattr(server_module, "server_command", command)

    return configure


def test_a_slow_server_start_is_waited_for(fake_server) -> None:
    fake_server(delay=3.0)
    handle = ensure_server(free_port(), timeout=300, private=True)
    try:
        assert handle.started_here and server_module.server_healthy(handle.url)
    finally:
        handle.stop()
    assert handle.process is not None and handle.process.poll() is not None


def test_a_server_that_never_answers_is_an_error_naming_its_log(fake_server) -> None:
    fake_server(delay=3600.0)
    with pytest.raises(UserError, match=r"did not answer within 1 s .*--server-timeout.*\.log"):
        ensure_server(free_port(), timeout=1)


def test_lsvos_run_starts_its_own_server_not_prefects_ephemeral_one(
    fake_server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a loaded host Prefect's ephemeral server gives up after 20 s; ``lsvos run`` starts
    a server of its own, waits for it, runs against it and stops it."""
    from prefect.settings import PREFECT_API_URL

    import pipeline.orchestration.flow as flow

    fake_server(delay=3.0)
    monkeypatch.setattr(server_module, "configured_api_url", lambda: (None, "nowhere"))
    monkeypatch.setattr(server_module, "DEFAULT_PORT", free_port())  # nothing answers there
    started: list[ServerHandle] = []
    real_ensure = server_module.ensure_server

    def recording_ensure(*args, **kwargs):
        started.append(real_ensure(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(server_module, "ensure_server", recording_ensure)
    seen: dict[str, object] = {}

    def flow_stand_in(**kwargs):
        seen["env"] = os.environ.get("PREFECT_API_URL")
        seen["settings"] = PREFECT_API_URL.value()
        seen["healthy"] = server_module.server_healthy(str(seen["env"]))
        return {"report_md": "report.md", "submission": None}

    monkeypatch.setattr(flow, "lsvos_2stage", flow_stand_in)
    assert main(["run", "recipe=demo"]) == 0
    assert len(started) == 1 and started[0].started_here
    assert seen["env"] == seen["settings"] == started[0].url and seen["healthy"]
    assert started[0].process is not None and started[0].process.poll() is not None  # stopped
    assert "PREFECT_API_URL" not in os.environ


def test_a_taken_port_is_named_with_the_way_out() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(UserError, match=rf"port {port} on 127.0.0.1 is taken.*--port N"):
            ensure_server(port, timeout=30)


def test_a_port_lost_during_start_is_named(fake_server) -> None:
    fake_server(delay=0.0, fail=True)
    with pytest.raises(UserError, match=r"is taken by a program .*--port N"):
        ensure_server(free_port(), timeout=30)


def _in_fresh_process(code: str, prefect_home: Path, env: dict[str, str] | None = None):
    """Run ``code`` in a new interpreter whose Prefect settings come from ``prefect_home``."""
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env={**base, "PREFECT_HOME": str(prefect_home), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _profile_with(home: Path, url: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "profiles.toml").write_text(
        f'active = "default"\n\n[profiles.default]\nPREFECT_API_URL = "{url}"\n'
    )


def test_a_stale_loopback_url_in_the_profile_is_passed_over(tmp_path: Path) -> None:
    """What `lsvos demo` / `serve` used to leave behind: a profile URL whose server is gone."""
    home = tmp_path / "home"
    _profile_with(home, f"http://127.0.0.1:{free_port()}/api")
    (tmp_path / "fake.py").write_text(FAKE_SERVER)
    proc = _in_fresh_process(
        f"""
        import sys
        from pipeline.orchestration import server
        server.server_command = lambda port: [sys.executable, {str(tmp_path / "fake.py")!r},
                                              str(port), "0"]
        server.DEFAULT_PORT = server.free_port()
        handle = server.server_for_run(timeout=120)
        print("URL", handle.url, handle.started_here)
        handle.stop()
        """,
        home,
    )
    assert proc.returncode == 0, proc.stderr
    assert "does not answer; this run uses a server of its own" in proc.stderr
    assert "the Prefect profile 'default'" in proc.stderr
    assert " True" in proc.stdout


def test_an_unreachable_remote_url_is_an_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _profile_with(home, "http://prefect.invalid:4200/api")
    proc = _in_fresh_process(
        """
        from pipeline.cli import main
        raise SystemExit(main(["run", "recipe=demo"]))
        """,
        home,
    )
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("lsvos run: error: PREFECT_API_URL=http://prefect.invalid:4200/api")
    assert "Traceback" not in proc.stderr


def test_lsvos_serve_does_not_write_the_profile_unasked(fake_server, tmp_path: Path) -> None:
    """``lsvos serve`` against a server (here the stand-in, on which serving then fails) must
    leave the user's profile as it was, and print the line to export instead."""
    fake_server(delay=0.0)
    stand_in = ensure_server(free_port(), timeout=120)
    home = tmp_path / "home"
    home.mkdir()
    profile = 'active = "default"\n\n[profiles.default]\n'
    (home / "profiles.toml").write_text(profile)
    port = stand_in.url.split(":")[-1].removesuffix("/api")
    try:
        proc = _in_fresh_process(
            f"""
            from pipeline.cli import main
            raise SystemExit(main(["serve", "--port", "{port}"]))
            """,
            home,
        )
    finally:
        stand_in.stop()
    assert f"export PREFECT_API_URL={stand_in.url}" in proc.stdout, proc.stdout + proc.stderr
    assert (home / "profiles.toml").read_text() == profile


def test_server_for_run_reuses_a_configured_server_that_answers(
    fake_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_server(delay=0.0)
    running = ensure_server(free_port(), timeout=120)
    try:
        monkeypatch.setattr(server_module, "configured_api_url", lambda: (running.url, "test"))
        handle = server_for_run()
        assert handle.url == running.url and not handle.started_here
    finally:
        running.stop()


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's prctl")
def test_a_private_server_stops_when_its_run_is_killed(tmp_path: Path) -> None:
    (tmp_path / "fake.py").write_text(FAKE_SERVER)
    proc = _in_fresh_process(
        f"""
        import os, signal, sys
        from pipeline.orchestration import server
        server.server_command = lambda port: [sys.executable, {str(tmp_path / "fake.py")!r},
                                              str(port), "0"]
        handle = server.ensure_server(server.free_port(), timeout=120, private=True)
        print("PID", handle.process.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        tmp_path / "home",
    )
    assert proc.returncode == -9
    pid = int(proc.stdout.split()[1])
    for _ in range(100):  # the kernel delivers SIGTERM to the orphan at once; allow it to exit
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        pytest.fail("the private server outlived the killed run")


def test_every_socket_a_run_opens_is_on_loopback() -> None:
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.flow import task_runner

    command = server_module.server_command(4200)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    runtime = compose_config(["runtime.task_runner=dask"]).runtime
    kwargs = task_runner(runtime).cluster_kwargs
    assert kwargs["host"] == "127.0.0.1" and kwargs["dashboard_address"].startswith("127.0.0.1:")
