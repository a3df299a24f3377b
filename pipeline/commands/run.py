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
        "--port", type=int, default=None, help="use the Prefect server on this port if it answers"
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
    import os

    split_overrides(args)

    from pipeline.orchestration.serve import DEFAULT_PORT, api_url, server_healthy, use_server

    url = os.environ.get("PREFECT_API_URL") or api_url(args.port or DEFAULT_PORT)
    if server_healthy(url):
        use_server(url, persist=False)  # else Prefect starts a temporary server for this run
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.flow import lsvos_2stage

    compose_config(args.overrides)  # fail on a bad config before Prefect starts
    summary = lsvos_2stage(
        overrides=list(args.overrides),
        nodes=args.nodes,
        stages=args.stages,
        refresh=args.refresh,
        refresh_nodes=args.refresh_nodes,
    )
    print(f"\nreport: {summary['report_md']}")
    if summary.get("submission"):
        sub = summary["submission"]
        print(f"submission: {sub['zip']} ({'valid' if sub['valid'] else 'INVALID'})")
    return 0
