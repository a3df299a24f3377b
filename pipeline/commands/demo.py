"""``lsvos demo``: the main job on the built-in synthetic benchmark, through the deployment."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = (
    "run lsvos-2stage/demo through a local Prefect server and `lsvos serve`, then print the "
    "per-node J&F table"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.orchestration.server import add_server_timeout

    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the demo run")
    parser.add_argument("--port", type=int, default=4200, help="Prefect server port")
    parser.add_argument(
        "--keep-server", action="store_true", help="leave a server started here running"
    )
    add_server_timeout(parser)


def run(args: argparse.Namespace) -> int:
    import json

    from pipeline.orchestration.serve import run_demo

    report_md = run_demo(
        args.port, args.overrides, keep_server=args.keep_server, server_timeout=args.server_timeout
    )
    report = json.loads(report_md.with_name("report.json").read_text())
    print()
    print(report_md.read_text())
    sub = report.get("submission") or {}
    print(f"report: {report_md}\nsubmission: {sub.get('zip')} (valid: {sub.get('valid')})")
    return 0 if sub.get("valid", False) else 1
