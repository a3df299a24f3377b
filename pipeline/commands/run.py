"""``lsvos run [OVERRIDES...]``: run the flow in this process (no deployment needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

NAME = "run"
HELP = "run the lsvos-2stage flow here, with Hydra overrides (e.g. recipe=lsvos2023)"


def describe_configs(config_dir: Path = CONFIG_DIR) -> str:
    """The recipes (with their stages and nodes) and every config group's options, read from
    ``configs/`` (``lsvos run --help``'s epilog)."""
    import yaml

    def read(path: Path) -> tuple[dict, dict]:
        """The recipe's own fields, and its nodes (those of a recipe it extends first)."""
        raw = yaml.safe_load(path.read_text()) or {}
        nodes: dict = {}
        for entry in raw.get("defaults", []) or []:
            if isinstance(entry, str) and (path.parent / f"{entry}.yaml").is_file():
                nodes.update(read(path.parent / f"{entry}.yaml")[1])
        recipe = raw.get("recipe", {}) or {}
        return recipe, {**nodes, **(recipe.get("nodes", {}) or {})}

    lines = ["recipes (recipe=NAME):"]
    for path in sorted((config_dir / "recipe").glob("*.yaml")):
        recipe, nodes = read(path)
        stages: dict[str, list[str]] = {}
        for name, node in nodes.items():
            stages.setdefault(str((node or {}).get("stage", "-")), []).append(name)
        lines.append(f"  {path.stem:12s} {recipe.get('description', '')}")
        for stage, members in stages.items():
            lines.append(f"  {'':12s}   stage {stage}: {', '.join(members)}")
    lines.append("config groups (GROUP=OPTION, or one value: producers.sgmg.checkpoint=FILE):")
    for group in sorted(p for p in config_dir.iterdir() if p.is_dir() and p.name != "recipe"):
        options = sorted(p.stem for p in group.glob("*.yaml"))
        where = {"producer": "producers.<name>", "engine": "engines.<name>"}.get(group.name)
        target = f"/{group.name}@{where}" if where else group.name
        lines.append(f"  {target:28s} {', '.join(options)}")
    lines.append("--stages takes the stage names above; --nodes the node names.")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.orchestration.server import add_server_timeout

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = describe_configs()
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
    add_server_timeout(parser)


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

    cfg = compose_config(args.overrides)  # fail on a bad config before a server starts
    from pipeline.orchestration.prepare import check_run

    check_run(  # missing paths, all of them, too
        cfg,
        nodes=args.nodes,
        stages=args.stages,
        refresh=args.refresh,
        refresh_nodes=args.refresh_nodes,
    )
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
