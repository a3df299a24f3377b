"""``lsvos serve``: a local Prefect server plus the served lsvos-2stage deployments."""

from __future__ import annotations

import argparse

NAME = "serve"
HELP = "start (or reuse) a local Prefect server and serve lsvos-2stage/demo and /default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=4200, help="server port on 127.0.0.1")
    parser.add_argument(
        "--limit", type=int, default=1, help="flow runs executed at the same time (default 1)"
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.orchestration.serve import ensure_server, serve_deployments, use_server

    server = ensure_server(args.port)
    how = "started" if server.process else "reusing"
    print(f"{how} the Prefect server at {server.url} (UI: {server.url.removesuffix('/api')})")
    use_server(server.url, persist=True)
    print(
        "serving lsvos-2stage/demo and lsvos-2stage/default; from another shell:\n"
        "  prefect deployment run lsvos-2stage/demo --watch",
        flush=True,
    )
    try:
        serve_deployments(limit=args.limit)
    finally:
        server.stop()
    return 0
