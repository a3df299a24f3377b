"""``lsvos serve``: a local Prefect server plus the served lsvos-2stage deployments."""

from __future__ import annotations

import argparse

NAME = "serve"
HELP = "start (or reuse) a local Prefect server and serve lsvos-2stage/demo and /default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.orchestration.server import add_server_timeout

    parser.add_argument("--port", type=int, default=4200, help="server port on 127.0.0.1")
    parser.add_argument(
        "--limit", type=int, default=1, help="flow runs executed at the same time (default 1)"
    )
    parser.add_argument(
        "--set-profile",
        action="store_true",
        help="also write PREFECT_API_URL into the active Prefect profile (default: only print "
        "the line to export in another shell)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print no banner (lsvos demo runs its serve this way)",
    )
    add_server_timeout(parser)


def run(args: argparse.Namespace) -> int:
    from pipeline.orchestration.serve import serve_deployments
    from pipeline.orchestration.server import ensure_server, prefect_api, set_profile_api_url

    server = ensure_server(args.port, args.server_timeout, private=True)
    if not args.quiet:
        how = "started the" if server.started_here else "using the running"
        print(f"{how} Prefect server at {server.url} (UI: {server.url.removesuffix('/api')})")
    if args.set_profile:
        set_profile_api_url(server.url)
        print(f"wrote PREFECT_API_URL={server.url} into the active Prefect profile")
        hint = ""
    else:
        hint = f"  export PREFECT_API_URL={server.url}\n"
    if not args.quiet:
        print(
            "serving lsvos-2stage/demo and lsvos-2stage/default; from another shell:\n"
            f"{hint}  prefect deployment run lsvos-2stage/demo --watch",
            flush=True,
        )
    try:
        with prefect_api(server.url):  # this process and the flow runs it starts
            serve_deployments(limit=args.limit, banner=not args.quiet)
    finally:
        server.stop()
    return 0
