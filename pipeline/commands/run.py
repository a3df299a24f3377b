"""``lsvos run [OVERRIDES...]``: run the flow in this process (no deployment needed)."""

from __future__ import annotations

import argparse

NAME = "run"
HELP = "run the lsvos-2stage flow here, with Hydra overrides (e.g. recipe=lsvos2023)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. engines.aot.flip=false")
    parser.add_argument("--nodes", nargs="+", help="run only these nodes (and what they need)")
    parser.add_argument("--stages", nargs="+", help="run only the nodes of these stages")
    parser.add_argument("--refresh", action="store_true", help="recompute even cached outputs")
    parser.add_argument("--refresh-nodes", nargs="+", help="recompute these nodes")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="the Prefect server's port: one answering there is used, else one is started there "
        "for this run (default: reuse 4200 if it answers, else a private server on a free port)",
    )
    parser.add_argument(
        "--server-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for a server started for this run to answer (default 600)",
    )


def split_overrides(args: argparse.Namespace) -> None:
    """Move ``key=value`` words that a greedy ``--nodes`` / ``--stages`` / ``--refresh-nodes``
    took (``--nodes sgmg producers.sgmg.checkpoint=x``) back to the overrides: a node or stage
    name never holds ``=``."""
    for name in ("nodes", "stages", "refresh_nodes"):
        values = getattr(args, name)
        if values:
            setattr(args, name, [v for v in values if "=" not in v] or None)
            args.overrides = [*args.overrides, *(v for v in values if "=" in v)]


def run(args: argparse.Namespace) -> int:
    split_overrides(args)
    from pipeline.orchestration.config import compose_config

    compose_config(args.overrides)  # fail on a bad config before a server starts
    from pipeline.orchestration.flow import lsvos_2stage
    from pipeline.orchestration.server import prefect_api, server_for_run

    server = server_for_run(args.port, args.server_timeout)
    try:
        with prefect_api(server.url):
            summary = lsvos_2stage(
                overrides=list(args.overrides),
                nodes=args.nodes,
                stages=args.stages,
                refresh=args.refresh,
                refresh_nodes=args.refresh_nodes,
            )
    finally:
        server.stop()
    print(f"\nreport: {summary['report_md']}")
    if summary.get("submission"):
        sub = summary["submission"]
        print(f"submission: {sub['zip']} ({'valid' if sub['valid'] else 'INVALID'})")
    return 0
