"""The local Prefect server every command runs against (SQLite, 127.0.0.1 only).

Three ways a command gets its server, in :func:`server_for_run`'s order:

* the one ``PREFECT_API_URL`` names (the environment, else the active Prefect profile), when it
  answers; a loopback URL that does not answer (a server that has since stopped) is reported and
  passed over, any other is an error, since the user chose that server;
* the one answering on ``127.0.0.1:<port>`` (``lsvos serve`` or ``lsvos demo --keep-server``);
* else a private server this process starts on a free port and stops when the run ends (and
  which the kernel stops if this process is killed).

Prefect's own fallback, its "ephemeral" server, is never used: it gives up after 20 s, and a
loaded host takes longer than that to start one (issue "Hardening", item 2). A server started
here waits as long as ``timeout`` for its first answer. Nothing here writes the user's Prefect
profile; ``lsvos serve --set-profile`` does, when asked.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError

DEFAULT_PORT = 4200
DEFAULT_START_TIMEOUT = (
    600.0  # seconds; a server starts in ~10 s idle, minutes at load 10 on 2 cores
)
QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",
}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def add_server_timeout(parser: argparse.ArgumentParser) -> None:
    """``--server-timeout`` for the commands that may start a server (run, serve, demo)."""
    parser.add_argument(
        "--server-timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT,
        help="seconds to wait for a Prefect server started here to answer "
        f"(default {DEFAULT_START_TIMEOUT:.0f})",
    )


def api_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}/api"


def server_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.read().strip() == b"true"
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
        return False


def port_in_use(port: int) -> bool:
    """Whether something already listens on (or holds) ``127.0.0.1:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A port on 127.0.0.1 that nothing holds now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_command(port: int) -> list[str]:
    """The command that starts a Prefect server on ``127.0.0.1:port``."""
    return [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        f"{port}",
    ]


def port_taken_error(port: int) -> UserError:
    return UserError(
        f"port {port} on 127.0.0.1 is taken by a program that is not a Prefect server; choose "
        f"another port with --port N (e.g. `lsvos demo --port {port + 1}`; `lsvos serve` and "
        f"`lsvos run` take --port too), or stop that program"
    )


@dataclass
class ServerHandle:
    """A server that answers; ``process`` is set only when this process started it."""

    url: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        """Stop a server started here, once this process's Prefect logs and events reached it."""
        if self.process is not None and self.process.poll() is None:
            flush_prefect_clients()
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def flush_prefect_clients(timeout: float = 30.0) -> None:
    """Send what this process's Prefect log handler and events worker still hold (a server
    stopped before that prints "Error logging to API" at exit)."""
    if "prefect" not in sys.modules:
        return
    with contextlib.suppress(Exception):
        from prefect.logging.handlers import APILogHandler

        APILogHandler.flush()
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=timeout)


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))


def _stop_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to send SIGTERM to this child when its parent dies (Linux), so that a
    killed run leaves no private server behind."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def ensure_server(
    port: int = DEFAULT_PORT, timeout: float = DEFAULT_START_TIMEOUT, private: bool = False
) -> ServerHandle:
    """Reuse the server answering on ``port``, or start one and wait until it answers.

    ``private``: the server belongs to this process and stops when it dies. Raises
    :class:`UserError` when the port is held by another program, when the server exits, or when
    it has not answered within ``timeout`` seconds (its log is named).
    """
    url = api_url(port)
    if server_healthy(url):
        return ServerHandle(url)
    if port_in_use(port):
        raise port_taken_error(port)
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"lsvos-server-{port}.log"
    env = {**os.environ, **QUIET_ENV}
    env.pop("PREFECT_API_URL", None)  # the server itself must not point at another server
    with open(log_path, "ab") as log:
        start = log.tell()
        process = subprocess.Popen(
            server_command(port),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C reaches this process, which stops the server
            preexec_fn=_stop_with_parent if private and sys.platform == "linux" else None,
        )
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if server_healthy(url):
            return ServerHandle(url, process, log_path)
        if process.poll() is not None:
            written = log_path.read_bytes()[start:].decode("utf-8", "replace")
            if "address already in use" in written.lower():
                raise port_taken_error(port)
            last = next((x for x in reversed(written.splitlines()) if x.strip()), "")
            raise UserError(
                f"the Prefect server on port {port} exited with status {process.returncode}"
                + (f" ({last.strip()[:200]})" if last else "")
                + f"; see {log_path}"
            )
        time.sleep(0.5)
    ServerHandle(url, process, log_path).stop()
    raise UserError(
        f"the Prefect server on port {port} did not answer within {timeout:.0f} s (is the host "
        f"loaded? raise --server-timeout, or start one first with `lsvos serve`); see {log_path}"
    )


def _is_loopback(url: str) -> bool:
    return (urllib.parse.urlparse(url).hostname or "") in LOOPBACK_HOSTS


def configured_api_url() -> tuple[str | None, str]:
    """``PREFECT_API_URL`` as Prefect would read it, and where it comes from."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"], "the environment"
    from prefect.context import get_settings_context

    context = get_settings_context()
    url = context.settings.api.url
    return (str(url) if url else None), f"the Prefect profile {context.profile.name!r}"


def server_for_run(port: int | None = None, timeout: float = DEFAULT_START_TIMEOUT) -> ServerHandle:
    """The server a run uses (see the module docstring); stop it with :meth:`ServerHandle.stop`
    when the run ends (a no-op for a server this process did not start)."""
    configured, origin = configured_api_url()
    if configured:
        if server_healthy(configured):
            return ServerHandle(configured)
        if not _is_loopback(configured):
            raise UserError(
                f"PREFECT_API_URL={configured} (from {origin}) does not answer: start that server, "
                f"or unset PREFECT_API_URL (`prefect config unset PREFECT_API_URL` for a profile) "
                f"to let lsvos start a local one"
            )
        print(
            f"note: PREFECT_API_URL={configured} (from {origin}) does not answer; this run uses "
            f"a server of its own (`prefect config unset PREFECT_API_URL` clears the setting)",
            file=sys.stderr,
        )
    shared = api_url(port or DEFAULT_PORT)
    if server_healthy(shared):
        return ServerHandle(shared)
    return ensure_server(port or free_port(), timeout, private=True)


@contextlib.contextmanager
def prefect_api(url: str) -> Iterator[None]:
    """Point this process's Prefect client, and the processes it starts, at ``url``.

    Prefect reads its settings once, at import: the environment alone would not reach a client
    of this process, so the settings are overridden too (``temporary_settings``).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", *QUIET_ENV)}
    os.environ["PREFECT_API_URL"] = url
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def set_profile_api_url(url: str) -> None:
    """Write ``PREFECT_API_URL`` into the active Prefect profile (``lsvos serve --set-profile``)."""
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "config", "set", f"PREFECT_API_URL={url}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise UserError(
            f"`prefect config set PREFECT_API_URL={url}` failed: {result.stderr[-300:]}"
        )
